"""``ensemblex run`` (the main job) and ``ensemblex predict``."""

from __future__ import annotations

import json
import time
from enum import Enum
from pathlib import Path

import numpy as np
import pandas as pd
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table as RichTable
from sklearn.base import clone
from sklearn.model_selection import train_test_split

from ensemblex.cli.app import TaskChoice, app, console, example_path, fail
from ensemblex.combiners import default_candidates
from ensemblex.ensemble import EnsembleClassifier, EnsembleRegressor, _Ensemble
from ensemblex.report import build_report
from ensemblex.store import write_json_atomic
from ensemblex.tables import to_frame, write_frame
from ensemblex.tasks import encode_labels

MODEL_DIR = "model"
RUN_FILE = "run.json"


class Zoo(str, Enum):
    default = "default"
    fast = "fast"
    deep = "deep"


class Backend(str, Enum):
    local = "local"
    ray = "ray"


def read_data(path: Path) -> pd.DataFrame:
    """Read a CSV (optionally gzip) or Parquet table; errors name the file."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, na_values=["?"])
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: the file is empty") from None
    except Exception as exc:
        raise ValueError(f"{path}: cannot read as a CSV or Parquet table ({exc})") from None
    if len(frame) == 0:
        raise ValueError(f"{path}: the table has no rows")
    return frame


# An integer target with at most this many values is read as classes (override with --task).
_MAX_INTEGER_CLASSES = 10


def detect_task(y: pd.Series, task: str) -> str:
    """Text labels and whole numbers with few values are classes; other numbers regression."""
    if task != "auto":
        return task
    n = y.nunique()
    numeric = pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y)
    if numeric and n > 2:
        whole = bool(np.all(np.mod(y.to_numpy(dtype=float), 1) == 0))
        if not (whole and n <= _MAX_INTEGER_CLASSES):
            return "regression"
    return "binary" if n == 2 else "multiclass"


@app.command()
def run(
    data: Path | None = typer.Argument(
        None, help="Training table (CSV or Parquet). Omitted: the bundled churn table."
    ),
    target: str | None = typer.Option(None, "--target", help="Target column."),
    task: TaskChoice = typer.Option(TaskChoice.auto, "--task"),
    zoo: Zoo = typer.Option(Zoo.default, "--zoo", help="Members to cross-fit."),
    folds: int = typer.Option(5, "--folds", min=2),
    test_size: float = typer.Option(0.2, "--test-size", min=0.05, max=0.5),
    backend: Backend = typer.Option(Backend.local, "--backend"),
    ray_address: str | None = typer.Option(None, "--ray-address"),
    jobs: int | None = typer.Option(None, "--jobs", min=1, help="Parallel fits (default: cores)."),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(Path("ensemblex-run"), "--out", help="Run folder."),
) -> None:
    """Cross-fit a zoo, choose a combiner by nested CV, and write the run folder.

    OUT gets the saved ensemble (model/), oof.parquet and test.parquet (the wide layout
    `ensemblex blend` reads), and leaderboard.json. Rerunning the same command resumes.
    """
    if data is None:
        data, target = example_path("churn_modelling.csv"), target or "Exited"
        console.print(f"No DATA given: running on the bundled churn table ({data}).")
    try:
        frame = read_data(data)
        if target is None:
            raise ValueError(f"{data}: --target is required")
        if target not in frame.columns:
            raise ValueError(
                f"{data}: unknown target column {target!r}; columns are {list(frame.columns)}"
            )
        summary = _run(
            frame,
            target,
            data,
            task.value,
            zoo.value,
            folds,
            test_size,
            backend.value,
            ray_address,
            jobs,
            seed,
            out,
        )
    except (ValueError, TypeError, OSError) as exc:
        fail(str(exc))
    _print_leaderboard(summary)
    console.print(
        f"wrote {out}/: {MODEL_DIR}/, oof.parquet, test.parquet, leaderboard.json, report.html "
        f"({summary['seconds']:.0f}s)"
    )


def _run(frame, target, data, task, zoo, folds, test_size, backend, ray_address, jobs, seed, out):
    start = time.perf_counter()
    y_all = frame[target]
    if y_all.isna().any():
        raise ValueError(
            f"{data}: target column {target!r} is missing at row "
            f"{int(np.argmax(y_all.isna().to_numpy()))}"
        )
    task = detect_task(y_all, task)
    console.print(f"task: {task} (target {target!r}; --task overrides)")
    X_all = frame.drop(columns=target)
    stratify = None if task == "regression" else y_all
    X, X_test, y, y_test = train_test_split(
        X_all, y_all.to_numpy(), test_size=test_size, random_state=seed, stratify=stratify
    )
    cls = EnsembleRegressor if task == "regression" else EnsembleClassifier
    model = cls(
        members=zoo,
        cv=folds,
        random_state=seed,
        backend=backend,
        n_jobs=jobs,
        ray_address=ray_address,
        work_dir=out / "work",
    )
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:
        job = bar.add_task("cross-fitting members x folds", total=None)

        def progress(label, done, total):
            bar.update(
                job,
                completed=done,
                total=total,
                description=f"cross-fitting {label}"
                if label != "resumed"
                else "cross-fitting (resumed)",
            )

        model.fit(X.reset_index(drop=True), y, progress=progress)
    P_test = model.member_predictions(X_test)
    board = _test_scores(model, P_test, y_test)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / MODEL_DIR)
    for name, P, labels in (("oof", model.oof_, y), ("test", P_test, y_test)):
        wide = to_frame(P)
        wide.insert(0, target, labels)
        write_frame(wide, out / f"{name}.parquet")
    summary = {
        "data": str(data),
        "target": target,
        "task": task,
        "zoo": zoo,
        "folds": folds,
        "test_size": test_size,
        "seed": seed,
        "backend": backend,
        "metric": model.metric_.name,
        "greater_is_better": model.metric_.greater_is_better,
        "chosen": getattr(model.combiner_, "method_", type(model.combiner_).__name__),
        "dropped_columns": model.schema_.dropped,
        "leaderboard": json.loads(board.to_json(orient="records")),
        "seconds": time.perf_counter() - start,
    }
    write_json_atomic(summary, out / "leaderboard.json")
    write_json_atomic({"target": target, "task": task}, out / RUN_FILE)
    build_report(out)
    return summary


def _test_scores(model: _Ensemble, P_test, y_test) -> pd.DataFrame:
    """Add each member's and each combiner candidate's score on the held-out rows.

    Candidates are refit on all OOF rows (the chosen one already is) and never see test
    labels; the test split is only scored.
    """
    metric = model.metric_
    y = encode_labels(y_test, model.classes_) if model.classes_ is not None else y_test
    board = model.leaderboard_.copy()
    member_scores = metric.score_batch(y, P_test.values.transpose(1, 0, 2))
    scores = dict(zip(P_test.members, member_scores))
    labels = model.oof_labels_
    pool = default_candidates(metric, model.random_state)
    for name in board.loc[board["kind"] != "member", "model"]:
        start = time.perf_counter()
        fitted = clone(pool[name]).fit(model.oof_, labels)
        scores[name] = metric.score(y, fitted.predict(P_test))
        board.loc[board["model"] == name, "fit_seconds"] = time.perf_counter() - start
    board["test_score"] = board["model"].map(scores)
    return board


def _print_leaderboard(summary: dict) -> None:
    table = RichTable(
        title=f"Leaderboard ({summary['metric']}, "
        f"{'higher' if summary['greater_is_better'] else 'lower'} is better; "
        "members: OOF score, combiners: nested-CV score)"
    )
    for col in ("model", "kind", "cv score", "test score", "fit s", "predict ms/1k rows"):
        table.add_column(col, justify="left" if col in ("model", "kind") else "right")
    for row in summary["leaderboard"]:
        per_row = row.get("predict_seconds_per_row")
        table.add_row(
            row["model"],
            row["kind"],
            f"{row['cv_score']:.5f}",
            f"{row['test_score']:.5f}",
            "" if row.get("fit_seconds") is None else f"{row['fit_seconds']:.2f}",
            "" if per_row is None else f"{per_row * 1e6:.1f}",
        )
    console.print(table)


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A run folder (or a saved model folder)."),
    data: Path = typer.Argument(..., help="Rows to predict (CSV or Parquet)."),
    out: Path = typer.Option(Path("predictions.csv"), "--out", help="Output CSV."),
) -> None:
    """Predict new rows with a saved ensemble; the columns must match its training schema."""
    try:
        model_dir = run_dir / MODEL_DIR if (run_dir / MODEL_DIR).is_dir() else run_dir
        model = _Ensemble.load(model_dir)
        frame = read_data(data)
        run_file = run_dir / RUN_FILE
        if run_file.is_file():  # a table that still holds the target: predict without it
            target = json.loads(run_file.read_text())["target"]
            frame = frame.drop(columns=[target], errors="ignore")
        if model.classes_ is None:
            result = pd.DataFrame({"prediction": model.predict(frame)})
        else:
            proba = model.predict_proba(frame)
            result = pd.DataFrame(proba, columns=[str(c) for c in model.classes_])
            result.insert(0, "prediction", model.classes_[proba.argmax(axis=1)])
        write_frame(result, out)
    except (ValueError, TypeError, OSError) as exc:
        fail(f"{data}: {exc}" if str(data) not in str(exc) else str(exc))
    console.print(f"wrote {len(result)} predictions to {out}")


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A run folder written by `ensemblex run`."),
    ood: Path | None = typer.Option(
        None, "--ood", help="Out-of-distribution rows (the training columns) to compare with."
    ),
):
    """Rebuild RUN_DIR/report.html: one self-contained page (leaderboard and plots)."""
    try:
        ood_rows = None
        if ood is not None:
            target = json.loads((run_dir / "leaderboard.json").read_text())["target"]
            ood_rows = read_data(ood).drop(columns=[target], errors="ignore")
        path = build_report(run_dir, ood_rows)
    except (ValueError, TypeError, OSError) as exc:
        fail(str(exc))
    console.print(f"wrote {path}")
