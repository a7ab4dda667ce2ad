"""Replace a generated section of README.md, between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->`` markers, with a bench script's table."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def replace_section(name: str, text: str, readme: Path = README) -> None:
    """Put ``text`` between the markers named ``name`` (they must already be there)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    content = readme.read_text()
    if start not in content or end not in content:
        raise ValueError(f"{readme}: markers {start} ... {end} not found")
    before, rest = content.split(start, 1)
    _, after = rest.split(end, 1)
    tmp = readme.with_suffix(".md.tmp")
    tmp.write_text(f"{before}{start}\n{text.strip()}\n{end}{after}")
    tmp.replace(readme)
