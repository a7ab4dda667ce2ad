"""``ensemblex blend``: combine members' predictions that users already have."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path

import numpy as np
import pandas as pd
import typer
from rich.table import Table as RichTable

from ensemblex.cli.app import TaskChoice, app, console, example_path, fail
from ensemblex.combiners import AutoCombiner, BestSingle, default_candidates
from ensemblex.combiners.auto import BEST_SINGLE, nested_scores, outer_splits
from ensemblex.metrics import get_metric
from ensemblex.store import write_json_atomic
from ensemblex.tables import Table, read_table, write_frame
from ensemblex.tasks import encode_labels, is_classification


class Method(str, Enum):
    auto = "auto"
    mean = "mean"
    best = "best"
    weighted = "weighted"
    greedy = "greedy"
    stack = "stack"
    stack_regularized = "stack_regularized"


@app.command()
def blend(
    oof: Path | None = typer.Argument(
        None,
        help="Out-of-fold predictions (CSV or Parquet, wide layout) with the target. "
        "Omitted: the bundled churn example.",
    ),
    target: str | None = typer.Option(None, "--target", help="Target column of OOF."),
    test: Path | None = typer.Option(None, "--test", help="Test predictions to combine."),
    id_col: str | None = typer.Option(None, "--id", help="Id column carried to the output."),
    task: TaskChoice = typer.Option(TaskChoice.auto, "--task"),
    method: Method = typer.Option(
        Method.auto, "--method", help="Combiner; auto picks by nested cross-validation."
    ),
    metric: str = typer.Option(
        "auto",
        "--metric",
        help="rmse, mae, r2, log_loss, accuracy, balanced_accuracy, "
        "roc_auc or brier; auto is rmse or log_loss.",
    ),
    positive: str | None = typer.Option(
        None, "--positive", help="Positive class of a binary task."
    ),
    folds: int = typer.Option(5, "--folds", min=2, help="Outer folds of the nested CV."),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(Path("ensemblex-out"), "--out", help="Output folder."),
) -> None:
    """Combine members' out-of-fold predictions; predict the TEST rows.

    Writes OUT/predictions.csv and OUT/blend.json, and prints the nested-CV table.
    """
    if oof is None:
        oof = example_path("churn_oof.csv")
        target = target or "Exited"
        test = test or example_path("churn_test.csv")
        id_col = id_col or "row"
        console.print(f"No OOF table given: blending the bundled churn example ({oof.parent}).")
    try:
        summary, predictions = _blend(
            oof, target, test, id_col, task.value, method.value, metric, positive, folds, seed
        )
        _write_outputs(out, predictions, summary)
    except (ValueError, TypeError, OSError) as exc:
        fail(str(exc))
    _print_summary(summary, out)


def _blend(oof, target, test, id_col, task, method, metric, positive, folds, seed):
    if target is None:
        raise ValueError(f"{oof}: --target is required (the target column of the OOF table)")
    start = time.perf_counter()
    train = read_table(oof, target=target, id_col=id_col, task=task, positive=positive)
    P = train.predictions
    scored = _read_test(test, train, target, id_col) if test is not None else None
    metric_obj = get_metric(metric, P.task)
    codes = encode_labels(train.y, P.classes) if is_classification(P.task) else train.y
    if len(np.unique(codes)) < 2:
        raise ValueError(f"{oof}: target column {target!r} has a single value")
    if method == "auto":
        combiner = AutoCombiner(metric=metric_obj, cv=folds, random_state=seed)
        combiner.fit(P, train.y)
        chosen, scores, seconds = combiner.method_, combiner.scores_, combiner.fit_seconds_
        fitted = combiner.combiner_
    else:
        pool = default_candidates(metric_obj, seed)
        candidates = {method: pool[method]}
        if method != BEST_SINGLE:
            candidates[BEST_SINGLE] = pool[BEST_SINGLE]
        splits = outer_splits(codes, P.task, folds, seed)
        results = nested_scores(candidates, P, train.y, metric_obj, splits)
        scores = {name: r.score for name, r in results.items()}
        seconds = {name: r.seconds for name, r in results.items()}
        chosen, fitted = method, pool[method].fit(P, train.y)
    best = BestSingle(metric=metric_obj).fit(P, train.y)
    rows = scored if scored is not None else train
    pred = fitted.predict(rows.predictions)
    summary = {
        "task": P.task,
        "metric": metric_obj.name,
        "greater_is_better": metric_obj.greater_is_better,
        "method": chosen,
        "nested_cv_scores": scores,
        "nested_cv_seconds": seconds,
        "weights": _weights(fitted, P.members),
        "dropped_members": getattr(fitted, "dropped_members_", {}),
        "best_single_member": best.best_member_,
        "member_oof_scores": best.member_scores_,
        "n_oof_rows": P.n_samples,
        "members": list(P.members),
        "classes": None if P.classes is None else [_plain(c) for c in P.classes.tolist()],
        "folds": folds,
        "seed": seed,
        "oof": str(oof),
        "test": None if test is None else str(test),
    }
    for name in ("condition_number_before_", "condition_number_after_"):
        if hasattr(fitted, name):
            summary[name.rstrip("_")] = getattr(fitted, name)
    if scored is not None and scored.y is not None:
        y_test = (
            encode_labels(scored.y, P.classes)
            if is_classification(P.task)
            else scored.y.astype(float)
        )
        summary["test_score"] = metric_obj.score(y_test, pred)
        summary["best_single_test_score"] = metric_obj.score(
            y_test, best.predict(scored.predictions)
        )
    summary["fit_seconds"] = time.perf_counter() - start
    return summary, _predictions_frame(pred, rows, P, id_col)


def _read_test(test: Path, train: Table, target, id_col) -> Table:
    P = train.predictions
    return read_table(
        test, target=target, id_col=id_col, task=P.task, classes=P.classes, members=list(P.members)
    )


def _weights(fitted, members) -> dict[str, float] | None:
    weights = getattr(fitted, "weights_", None)
    if weights is None:
        return None
    return {m: float(w) for m, w in zip(members, weights)}


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _predictions_frame(pred: np.ndarray, rows: Table, P, id_col) -> pd.DataFrame:
    if P.task == "multiclass":
        frame = pd.DataFrame(pred, columns=[str(c) for c in P.classes.tolist()])
    else:
        frame = pd.DataFrame({"prediction": pred[:, -1]})
    if id_col is not None:
        frame.insert(0, id_col, rows.ids)
    return frame


def _write_outputs(out: Path, predictions: pd.DataFrame, summary: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_frame(predictions, out / "predictions.csv")
    write_json_atomic(summary, out / "blend.json")


def _print_summary(summary: dict, out: Path) -> None:
    table = RichTable(
        title=f"Nested {summary['folds']}-fold CV on {summary['n_oof_rows']} "
        f"OOF rows: {summary['metric']} "
        f"({'higher' if summary['greater_is_better'] else 'lower'} is better)"
    )
    table.add_column("combiner")
    table.add_column(summary["metric"], justify="right")
    table.add_column("seconds", justify="right")
    for name, score in summary["nested_cv_scores"].items():
        mark = " [bold green]<- chosen[/]" if name == summary["method"] else ""
        table.add_row(name + mark, f"{score:.5f}", f"{summary['nested_cv_seconds'][name]:.2f}")
    console.print(table)
    console.print(f"best single member: {summary['best_single_member']}")
    weights = summary.get("weights")
    if weights:
        top = sorted(((w, m) for m, w in weights.items() if w > 0), reverse=True)[:8]
        console.print("weights: " + ", ".join(f"{m} {w:.3f}" for w, m in top))
    if summary.get("dropped_members"):
        console.print(f"dropped as redundant: {', '.join(summary['dropped_members'])}")
    if "test_score" in summary:
        console.print(
            f"test {summary['metric']}: ensemble {summary['test_score']:.5f}, "
            f"best single member {summary['best_single_test_score']:.5f}"
        )
    console.print(
        f"wrote {out / 'predictions.csv'} and {out / 'blend.json'} ({summary['fit_seconds']:.1f}s)"
    )
