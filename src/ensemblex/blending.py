"""Combining predictions users already have (``ensemblex blend``): read the wide OOF and
test tables, choose or fit a combiner, predict the test rows, summarise."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from ensemblex.combiners import AutoCombiner, BestSingle
from ensemblex.files import write_json_atomic
from ensemblex.metrics import get_metric
from ensemblex.tables import Table, read_table, write_frame
from ensemblex.tasks import encode_labels, is_classification


def blend_tables(
    oof,
    target: str | None,
    *,
    test=None,
    id_col: str | None = None,
    task: str = "auto",
    method: str = "auto",
    metric: str = "auto",
    positive=None,
    folds: int = 5,
    seed: int = 0,
) -> tuple[dict, pd.DataFrame]:
    """Fit a combiner on the OOF table's rows and predict the test table's (or the OOF) rows.

    ``method="auto"`` chooses by nested cross-validation (:class:`AutoCombiner`); another
    method is fitted as asked and scored beside the best single member. Returns the summary
    written to ``blend.json`` and the predictions table (id column, then ``prediction`` or
    one probability column per class).
    """
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
    if not 2 <= folds <= P.n_samples:
        raise ValueError(
            f"--folds must be between 2 and the {P.n_samples} OOF rows, however: {folds}"
        )
    if is_classification(P.task):
        counts = np.bincount(codes, minlength=len(P.classes))
        rarest = int(counts.argmin())
        if counts[rarest] < folds:
            # stratified outer folds cannot hold more folds than the rarest class has rows;
            # refused rather than quietly lowered, so the folds reported are the folds asked
            n = int(counts[rarest])
            advice = f"use --folds {n} or fewer" if n >= 2 else "it needs at least 2"
            raise ValueError(
                f"--folds {folds}: class {_plain(P.classes[rarest])!r} has only {n} OOF "
                f"row{'s' if n != 1 else ''}; {advice}"
            )
    combiner = AutoCombiner(
        candidates="default" if method == "auto" else [method],
        metric=metric_obj,
        cv=folds,
        random_state=seed,
        select="best" if method == "auto" else "first",
    ).fit(P, train.y)
    chosen, scores, seconds = combiner.method_, combiner.scores_, combiner.fit_seconds_
    fitted = combiner.combiner_
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
        "folds": combiner.n_splits_,
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


def write_blend(out: Path, predictions: pd.DataFrame, summary: dict) -> None:
    """Write ``predictions.csv`` and ``blend.json`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_frame(predictions, out / "predictions.csv")
    write_json_atomic(summary, out / "blend.json")
