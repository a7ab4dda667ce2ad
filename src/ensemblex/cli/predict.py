"""``ensemblex predict``: new rows through a saved ensemble."""

from __future__ import annotations

from pathlib import Path

import typer

from ensemblex.cli.app import app, console, fail


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A run folder (or a saved model folder)."),
    data: Path = typer.Argument(..., help="Rows to predict (CSV or Parquet)."),
    out: Path = typer.Option(Path("predictions.csv"), "--out", help="Output CSV."),
) -> None:
    """Predict new rows with a saved ensemble; the columns must match its training schema."""
    from ensemblex.ensemble import Ensemble
    from ensemblex.runs import RunFolder, model_dir
    from ensemblex.tables import read_data, write_frame

    try:
        model = Ensemble.load(model_dir(run_dir))
    except (ValueError, TypeError, OSError) as exc:
        fail(f"{run_dir}: {exc}" if str(run_dir) not in str(exc) else str(exc))
    try:
        frame = read_data(data)
        run = RunFolder(run_dir)
        if run.is_run():  # a table that still holds the target: predict without it
            frame = frame.drop(columns=[run.summary["target"]], errors="ignore")
        result = model.prediction_frame(frame)
        write_frame(result, out)
    except (ValueError, TypeError, OSError) as exc:
        fail(f"{data}: {exc}" if str(data) not in str(exc) else str(exc))
    console.print(f"wrote {len(result)} predictions to {out}")
