"""``ensemblex predict``: new rows through a saved ensemble."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.text import Text

from ensemblex.cli.app import app, console, err_console, fail


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A run folder (or a saved model folder)."),
    data: Path = typer.Argument(..., help="Rows to predict (CSV or Parquet)."),
    out: Path = typer.Option(Path("predictions.csv"), "--out", help="Output CSV."),
) -> None:
    """Predict new rows with a saved ensemble; the columns must match its training schema."""
    from ensemblex.ensemble import Ensemble
    from ensemblex.files import write_json_atomic
    from ensemblex.runs import RunFolder, model_dir
    from ensemblex.tables import read_data, write_frame

    try:  # the rows first: an unreadable table is refused without loading the model
        frame = read_data(data)
    except (ValueError, TypeError, OSError) as exc:
        fail(f"{data}: {exc}" if str(data) not in str(exc) else str(exc))
    try:
        model = Ensemble.load(model_dir(run_dir))
    except (ValueError, TypeError, OSError) as exc:
        fail(f"{run_dir}: {exc}" if str(run_dir) not in str(exc) else str(exc))
    try:
        run = RunFolder(run_dir)
        if run.is_run():  # a table that still holds the target: predict without it
            frame = frame.drop(columns=[run.summary["target"]], errors="ignore")
        notes = model.unusual_inputs(frame)
        result = model.prediction_frame(frame)
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
