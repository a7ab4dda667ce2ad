"""Helpers for the member tests."""

import json
from pathlib import Path

import pytest

from ensemblex.files import sha256_file


def _rehash(folder: Path) -> None:
    """Rewrite ``member.json``'s digests to match the files as they are now, as a careless
    copy tool or an editor would: the family's own parser is then the last line of defence."""
    meta_path = Path(folder) / "member.json"
    meta = json.loads(meta_path.read_text())
    meta["files"] = {rel: sha256_file(Path(folder) / rel) for rel in meta["files"]}
    meta_path.write_text(json.dumps(meta))


@pytest.fixture(params=["digest", "parser"])
def damage_guard(request):
    """Which guard a damaged model file must meet: the digest in ``member.json`` (as saved),
    or, with digests rewritten to match the damage, the family's own parser. Yields
    ``(prepare, expected_message_regex_for_parser)`` helpers."""
    return request.param, _rehash


@pytest.fixture
def rehash():
    """Rewrites a member folder's digests to match its files, as a tamperer would."""
    return _rehash
