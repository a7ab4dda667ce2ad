"""``ensemblex cascade``: an early-exit cascade, its accuracy-cost front and operating point."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table as RichTable

from ensemblex.cli.app import app, console, fail


@app.command()
def cascade(
    source: Path = typer.Argument(..., help="A run folder, or OOF predictions (wide table)."),
    target: str | None = typer.Option(None, "--target", help="Target column (tables only)."),
    id_col: str | None = typer.Option(None, "--id", help="An id column to ignore (tables only)."),
    costs: Path | None = typer.Option(None, "--costs", help="JSON or CSV of cost per member."),
    target_accuracy: float | None = typer.Option(
        None, "--target-accuracy", help="Accuracy to reach (default: full ensemble - 0.1 pt)."
    ),
    target_risk: float | None = typer.Option(
        None, "--target-risk", help="Selective risk; keep the coverage at this risk."
    ),
    coverage: float | None = typer.Option(
        None,
        "--coverage",
        help="Coverage to reach at --target-risk (default: the full ensemble's).",
    ),
    rule: str = typer.Option("confidence", "--rule", help="confidence or window (binary)."),
    out: Path | None = typer.Option(None, "--out", help="Write the front and choice as JSON."),
) -> None:
    """Choose an early-exit threshold on OOF rows; print the front and the operating point."""
    from ensemblex.cascade_choice import choose_cascade
    from ensemblex.files import write_json_atomic

    try:
        result = choose_cascade(
            source,
            target=target,
            id_col=id_col,
            costs=costs,
            rule=rule,
            target_accuracy=target_accuracy,
            target_risk=target_risk,
            coverage=coverage,
        )
        if out is not None:
            write_json_atomic(result, out)
    except (ValueError, TypeError, OSError) as exc:
        fail(str(exc))
    _print(result)


def _print(result: dict) -> None:
    table = RichTable(title="Accuracy-cost Pareto front (OOF rows)")
    for col in ("threshold", "relative cost", "accuracy"):
        table.add_column(col, justify="right")
    for p in result["front"]:
        table.add_row(f"{p['threshold']:.4f}", f"{p['relative_cost']:.3f}", f"{p['accuracy']:.4f}")
    console.print(table)
    c = result["chosen"]
    console.print(f"order: {', '.join(result['order'])}")
    console.print(
        f"chosen: threshold {c['threshold']:.4f}, relative cost {c['relative_cost']:.3f}, "
        f"OOF accuracy {c['accuracy']:.4f} (full ensemble {result['full_accuracy']:.4f})"
    )
    if "test" in result:
        t = result["test"]
        console.print(
            f"test: accuracy {t['accuracy']:.4f} (full ensemble {t['full_accuracy']:.4f})"
            f" at {t['relative_cost']:.1%} of the full ensemble's cost"
        )
