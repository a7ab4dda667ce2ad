"""``ensemblex predict``: new rows through a saved ensemble."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.text import Text

from ensemblex.cli.app import app, console, err_console, fail, idle_threads_sleep


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A run folder (or a saved model folder)."),
    data: Path = typer.Argument(..., help="Rows to predict (CSV or Parquet)."),
    out: Path = typer.Option(Path("predictions.csv"), "--out", help="Output CSV."),
    id_col: str | None = typer.Option(
        None, "--id", help="A column of DATA copied first into the output (e.g. a row key)."
    ),
) -> None:
    """Predict new rows with a saved ensemble; the columns must match its training schema.

    The output has the --id column (if given), ``prediction`` (a value or the most probable
    class) and, for classification, ``proba_<class>`` for each class.
    """
    idle_threads_sleep()  # read when the libraries load, below
    from ensemblex.ensemble import Ensemble
    from ensemblex.files import write_json_atomic
    from ensemblex.runs import RunFolder, model_dir
    from ensemblex.tables import read_data, write_frame

    try:  # the rows first: an unreadable table is refused without loading the model
        frame = read_data(data)
    except (ValueError, TypeError, OSError) as exc:
        fail(f"{data}: {exc}" if str(data) not in str(exc) else str(exc))
    if id_col is not None and id_col not in frame.columns:
        shown = ", ".join(map(repr, frame.columns[:10])) + (", ..." if frame.shape[1] > 10 else "")
        fail(f"{data}: unknown id column {id_col!r}; the table's columns are {shown}")
    ids = None if id_col is None else frame[id_col].to_numpy()
    try:
        model = Ensemble.load(model_dir(run_dir))
    except (ValueError, TypeError, OSError) as exc:
        fail(f"{run_dir}: {exc}" if str(run_dir) not in str(exc) else str(exc))
    try:
        run = RunFolder(run_dir)
        if run.is_run():  # a table that still holds the target (or split): without them
            summary = run.summary
            split = (summary.get("split") or {}).get("column")
            frame = frame.drop(columns=[summary["target"], split], errors="ignore")
        if id_col is not None:
            frame = _without_id(frame, id_col, model.schema_)
        notes = model.unusual_inputs(frame)
        result = model.prediction_frame(frame)
        if id_col is not None:
            if id_col in result.columns:
                raise ValueError(f"--id {id_col!r} is also the name of an output column")
            result.insert(0, id_col, ids)
        write_frame(result, out)
        sidecar = out.with_name(out.name + ".json")
        write_json_atomic({"rows": len(result), "model": str(run_dir), "warnings": notes}, sidecar)
    except (ValueError, TypeError, OSError) as exc:
        fail(f"{data}: {exc}" if str(data) not in str(exc) else str(exc))
    for note in notes:
        err_console.print(
            Text.assemble(("warning:", "yellow"), f" {data}: {note}"), highlight=False
        )
    console.print(f"wrote {len(result)} predictions to {out} (and {sidecar.name})")


def _without_id(frame, id_col: str, schema):
    """``frame`` less the id column, unless the model knows it: a training feature is needed,
    and an ID-like column it dropped is accepted (members reading raw columns may use it);
    any other column would fail the schema check as unexpected."""
    if id_col in schema.features or id_col in schema.dropped:
        return frame
    return frame.drop(columns=[id_col], errors="ignore")  # gone if it was the target
