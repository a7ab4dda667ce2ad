"""``ensemblex evaluate``: every uncertainty metric for each member and for the ensemble."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table as RichTable

from ensemblex.cli.app import TaskChoice, app, console, fail
from ensemblex.files import write_json_atomic
from ensemblex.metrics.summary import evaluate_predictions
from ensemblex.tables import read_table


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


def _print(result: dict) -> None:
    rows = result["members"]
    columns = list(dict.fromkeys(c for scores in rows.values() for c in scores))
    table = RichTable(title=f"Evaluation ({result['task']})")
    table.add_column("member")
    for col in columns:
        table.add_column(col, justify="right")
    for name, scores in rows.items():
        table.add_row(name, *(f"{scores.get(c, float('nan')):.4f}" for c in columns))
    console.print(table)
    for key, value in result["ensemble"].items():
        console.print(f"{key}: {value}")
