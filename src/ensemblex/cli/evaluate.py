"""``ensemblex evaluate``: every uncertainty metric for each member and for the ensemble."""

from __future__ import annotations

import textwrap
from pathlib import Path

import typer
from rich.table import Table as RichTable

from ensemblex.cli.app import TaskChoice, app, console, fail
from ensemblex.cli.display import number_column, text_column
from ensemblex.report.numbers import format_number


@app.command()
def evaluate(
    predictions: Path = typer.Argument(..., help="Member predictions with the target (wide)."),
    target: str = typer.Option(..., "--target", help="Target column."),
    id_col: str | None = typer.Option(None, "--id", help="An id column to ignore."),
    task: TaskChoice = typer.Option(TaskChoice.auto, "--task"),
    ood_predictions: Path | None = typer.Option(
        None, "--ood", help="The same members' predictions on out-of-distribution rows."
    ),
    out: Path | None = typer.Option(None, "--out", help="Write every metric as JSON here."),
) -> None:
    """Score calibration, selective prediction, OOD detection and diversity.

    Classification: one probability column per member (binary) or '<member>:<class>'.
    Regression: one column per member, '<member>:mean' and '<member>:var' columns for
    members that predict a Gaussian, or '<member>:q<level>' columns for quantiles.
    """
    from ensemblex.files import write_json_atomic
    from ensemblex.metrics.summary import evaluate_predictions
    from ensemblex.tables import read_table

    try:
        table = read_table(predictions, target=target, id_col=id_col, task=task.value)
        P, P_ood = table.predictions, None
        if ood_predictions is not None:
            if P.task == "regression":
                raise ValueError(f"{ood_predictions}: --ood is for classification predictions")
            P_ood = read_table(
                ood_predictions,
                target=target,
                id_col=id_col,
                task=P.task,
                classes=P.classes,
                members=list(P.members),
            ).predictions
        result = evaluate_predictions(P, table.y, P_ood)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(result, out)
    except (ValueError, TypeError, OSError) as exc:
        fail(str(exc))
    _print(result)
    if out is not None:
        console.print(f"wrote {out}")


_DIGITS = 4  # significant digits: enough to rank members, short enough for 80 columns


def _print(result: dict) -> None:
    """Print the members' metrics (tables split by columns to fit the terminal), then the
    ensemble's summary as a second table."""
    rows = result["members"]
    metrics = list(dict.fromkeys(c for scores in rows.values() for c in scores))
    cells = {
        name: [format_number(scores.get(c, float("nan")), _DIGITS) for c in metrics]
        for name, scores in rows.items()
    }
    headers = [_header(c) for c in metrics]
    widths = [
        max([len(line) for line in header.splitlines()] + [len(v[j]) for v in cells.values()])
        for j, header in enumerate(headers)
    ]
    groups = _column_groups(widths, console.width - (min(max(map(len, rows)), 20) + 4))
    for k, group in enumerate(groups):
        part = f", {k + 1} of {len(groups)}" if len(groups) > 1 else ""
        table = RichTable(title=f"Evaluation ({result['task']}{part})")
        text_column(table, "member")
        for j in group:
            number_column(table, headers[j])
        for name in rows:
            table.add_row(name, *(cells[name][j] for j in group))
        console.print(table)
    summary = RichTable(title="Ensemble")
    text_column(summary, "summary")
    text_column(summary, "value")
    for key, value in _flatten(result["ensemble"]):
        summary.add_row(key, value)
    if summary.row_count:
        console.print(summary)


def _header(metric: str) -> str:
    """A metric's name on lines of at most 11 characters: a long name must not widen its
    column of short numbers (``ood_auroc_max_probability`` becomes three lines)."""
    words = metric.replace("_", " ")
    return "\n".join(textwrap.wrap(words, width=max(11, *map(len, words.split()))))


def _column_groups(widths: list[int], room: int) -> list[list[int]]:
    """Consecutive column indices in groups whose cells, padding and borders fit ``room``."""
    groups: list[list[int]] = [[]]
    used = 0
    for j, width in enumerate(widths):
        if groups[-1] and used + width + 3 > room:
            groups.append([])
            used = 0
        groups[-1].append(j)
        used += width + 3
    return groups


def _flatten(value, key: str = "") -> list[tuple[str, str]]:
    """``(name, text)`` rows of a nested summary: ``{"ood": {"entropy": {"auroc": x}}}``
    gives ``("ood / entropy / auroc", "0.9731")``; lists are written comma-separated."""
    if isinstance(value, dict):
        rows = []
        for name, inner in value.items():
            rows.extend(_flatten(inner, f"{key} / {name}" if key else str(name)))
        return rows
    if isinstance(value, (list, tuple)):
        return [(key, ", ".join(_text(v) for v in value))]
    return [(key, _text(value))]


def _text(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return str(value) if isinstance(value, int) else format_number(value, _DIGITS)
