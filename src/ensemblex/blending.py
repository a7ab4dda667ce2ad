"""Combining predictions users already have (``ensemblex blend``): read the wide OOF and
test tables, choose or fit a combiner, predict the test rows, summarise."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from ensemblex.combiners import AutoCombiner, BestSingle, CombinerEnsemble, available_candidates
from ensemblex.files import write_json_atomic
from ensemblex.metrics import get_metric
from ensemblex.runs import FOLD
from ensemblex.tables import Table, _read_frame, from_frame, read_table, write_frame
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
    time_limit: float | None = None,
    progress=None,
    features=None,
    unsupervised: bool = False,
    labels=None,
) -> tuple[dict, pd.DataFrame]:
    """Fit a combiner on the OOF table's rows and predict the test table's (or the OOF) rows.

    ``method="auto"`` chooses by nested cross-validation (:class:`AutoCombiner`); another
    method is fitted as asked and scored beside the best single member. ``test`` is one
    table, one table with a ``fold`` column, or a list of tables (one per fold model, the
    same rows in each): per-fold predictions are combined fold by fold, then averaged.
    ``progress(name, done, total)`` is called as each candidate starts. ``features``: a
    table of the rows' original features, joined to the OOF and test rows by ``id_col``,
    for combiners that read them (dynamic selection, routing, fusion).
    ``unsupervised``: fit a label-free combiner without the OOF target (``labels``: an
    optional table of ``id_col`` and a label column for a few rows). Returns the summary
    written to ``blend.json`` and the predictions table (id column, then ``prediction`` or
    one probability column per class).
    """
    if features is not None and id_col is None:
        raise ValueError("--features needs --id: its rows are joined to the predictions by id")
    if unsupervised:
        return _blend_unsupervised(
            oof,
            target,
            test=test,
            id_col=id_col,
            task=task,
            method=method,
            metric=metric,
            positive=positive,
            features=features,
            labels=labels,
        )
    if labels is not None:
        raise ValueError("--labels goes with --unsupervised (the OOF target holds the labels)")
    if target is None:
        raise ValueError(f"{oof}: --target is required (the target column of the OOF table)")
    start = time.perf_counter()
    train = read_table(oof, target=target, id_col=id_col, task=task, positive=positive)
    P = train.predictions
    test_folds = _read_test(test, train, target, id_col) if test else None
    scored = test_folds[0] if test_folds else None
    X_train, X_rows = _features_for(features, id_col, train, scored)
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
        select="ensemble" if method == "auto" else "first",
        time_limit=time_limit,
    ).fit(P, train.y, X=X_train, progress=progress)
    chosen, scores, seconds = combiner.method_, combiner.scores_, combiner.fit_seconds_
    fitted = combiner.combiner_
    best = BestSingle(metric=metric_obj).fit(P, train.y)
    rows = scored if scored is not None else train
    if test_folds:
        # fold-consistent: combine each fold model's predictions, then average
        pred = fitted.predict_folds([t.predictions for t in test_folds], X=X_rows)
    else:
        pred = fitted.predict(rows.predictions, X=X_rows)
    summary = {
        "task": P.task,
        "metric": metric_obj.name,
        "greater_is_better": metric_obj.greater_is_better,
        "method": chosen,
        "nested_cv_scores": scores,
        "nested_cv_seconds": seconds,
        "skipped_by_time_limit": combiner.skipped_,
        "weights": _weights(fitted, P.members),
        "ensemble_weights": combiner.ensemble_weights_,
        "dropped_members": getattr(fitted, "dropped_members_", {}),
        "best_single_member": best.best_member_,
        "member_oof_scores": best.member_scores_,
        "n_oof_rows": P.n_samples,
        "members": list(P.members),
        "classes": None if P.classes is None else [_plain(c) for c in P.classes.tolist()],
        "folds": combiner.n_splits_,
        "seed": seed,
        "oof": str(oof),
        "test": None if not test else _as_text(test),
        "test_folds": len(test_folds) if test_folds else 0,
        "features": None if features is None else str(features),
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
            y_test, best.predict_folds([t.predictions for t in test_folds])
        )
    summary["fit_seconds"] = time.perf_counter() - start
    return summary, _predictions_frame(pred, rows, P, id_col)


def _features_for(features, id_col, train: Table, scored: Table | None):
    """The features of the OOF rows and of the rows predicted (test rows, or the OOF rows),
    joined from the ``features`` table by ``id_col``; (None, None) without a table."""
    if features is None:
        return None, None
    if id_col is None:
        raise ValueError("--features needs --id: its rows are joined to the predictions by id")
    path = Path(features)
    frame = _read_frame(path)
    if id_col not in frame.columns:
        raise ValueError(f"{path}: no id column {id_col!r}; columns are {list(frame.columns)}")
    if frame[id_col].duplicated().any():
        dup = frame[id_col][frame[id_col].duplicated()].iloc[0]
        raise ValueError(f"{path}: id {_plain(dup)!r} appears more than once in {id_col!r}")
    frame = frame.set_index(id_col)
    if frame.shape[1] == 0:
        raise ValueError(f"{path}: no feature columns besides the id column {id_col!r}")

    def rows_of(table: Table, what: str) -> pd.DataFrame:
        ids = pd.Index(table.ids)
        found = ids.isin(frame.index)
        if not found.all():
            first = _plain(table.ids[int(np.argmax(~found))])
            raise ValueError(
                f"{path}: no row with id {first!r} of the {what} ({int((~found).sum())} "
                "ids missing)"
            )
        return frame.loc[ids].reset_index(drop=True)

    X_train = rows_of(train, "OOF rows")
    X_rows = X_train if scored is None else rows_of(scored, "test rows")
    return X_train, X_rows


def _read_labels(labels, id_col, table: Table, target) -> np.ndarray:
    """Labels for some OOF rows from a table of ``id_col`` and one label column (or the
    ``target`` column), missing (None) for the others."""
    path = Path(labels)
    if id_col is None:
        raise ValueError("--labels needs --id: labels are joined to the OOF rows by id")
    frame = _read_frame(path)
    if id_col not in frame.columns:
        raise ValueError(f"{path}: no id column {id_col!r}; columns are {list(frame.columns)}")
    others = [c for c in frame.columns if c != id_col]
    column = target if target in others else (others[0] if len(others) == 1 else None)
    if column is None:
        raise ValueError(
            f"{path}: expected the id column and one label column (or {target!r}), however: "
            f"{list(frame.columns)}"
        )
    known = frame.dropna(subset=[column]).drop_duplicates(subset=[id_col], keep="last")
    lookup = dict(zip(known[id_col].tolist(), known[column].tolist()))
    unknown = [i for i in lookup if i not in set(table.ids.tolist())]
    if unknown:
        raise ValueError(f"{path}: id {_plain(unknown[0])!r} is not a row of the OOF table")
    y = np.array([lookup.get(i) for i in table.ids.tolist()], dtype=object)
    if table.predictions.task == "regression":
        y = np.array([np.nan if v is None else float(v) for v in y])
    return y


def _blend_unsupervised(
    oof, target, *, test, id_col, task, method, metric, positive, features, labels
) -> tuple[dict, pd.DataFrame]:
    """Fit a label-free combiner on the OOF rows without their target (a few labels from
    ``labels`` where given); score on the test rows only if they carry the target."""
    from ensemblex.combiners.labelfree import LABEL_FREE_DEFAULT

    start = time.perf_counter()
    frame = _read_frame(Path(oof))
    if target is not None and target in frame.columns:
        raise ValueError(
            f"{oof}: --unsupervised does not read the target column {target!r}; drop it from "
            "the OOF table, or blend without --unsupervised"
        )
    train = from_frame(frame, source=str(oof), id_col=id_col, task=task, positive=positive)
    P = train.predictions
    name = LABEL_FREE_DEFAULT if method == "auto" else method
    pool = available_candidates(metric, 0)
    if name not in pool or pool[name].needs_labels:
        free = sorted(n for n, c in pool.items() if not c.needs_labels)
        raise ValueError(
            f"--unsupervised needs a label-free --method among {free}, however: {name!r}"
        )
    y = None if labels is None else _read_labels(labels, id_col, train, target)
    test_folds = _read_test(test, train, target, id_col) if test else None
    scored = test_folds[0] if test_folds else None
    X_train, X_rows = _features_for(features, id_col, train, scored)
    fitted = pool[name].fit(P, y, X=X_train)
    rows = scored if scored is not None else train
    if test_folds:
        pred = fitted.predict_folds([t.predictions for t in test_folds], X=X_rows)
    else:
        pred = fitted.predict(rows.predictions, X=X_rows)
    metric_obj = get_metric(metric, P.task)
    summary = {
        "task": P.task,
        "metric": metric_obj.name,
        "greater_is_better": metric_obj.greater_is_better,
        "method": name,
        "unsupervised": True,
        "n_labels": 0 if y is None else int((~pd.isna(y)).sum()),
        "weights": _weights(fitted, P.members),
        "n_oof_rows": P.n_samples,
        "members": list(P.members),
        "classes": None if P.classes is None else [_plain(c) for c in P.classes.tolist()],
        "oof": str(oof),
        "test": None if not test else _as_text(test),
        "features": None if features is None else str(features),
    }
    if scored is not None and scored.y is not None:
        # the test labels only score what was fitted without them
        y_test = (
            encode_labels(scored.y, P.classes)
            if is_classification(P.task)
            else scored.y.astype(float)
        )
        folds = [t.predictions for t in test_folds]
        summary["test_score"] = metric_obj.score(y_test, pred)
        summary["mean_test_score"] = metric_obj.score(
            y_test, sum(f.values.mean(axis=1) for f in folds) / len(folds)
        )
        member_scores = metric_obj.score_batch(
            y_test, (sum(f.values for f in folds) / len(folds)).transpose(1, 0, 2)
        )
        summary["member_test_scores"] = dict(zip(P.members, map(float, member_scores)))
    summary["fit_seconds"] = time.perf_counter() - start
    return summary, _predictions_frame(pred, rows, P, id_col)


def _read_test(test, train: Table, target, id_col) -> list[Table]:
    """The test rows as one table per fold model: several files (one per fold), or one file
    whose ``fold`` column splits it, or one table of averaged predictions."""
    P = train.predictions
    like = {
        "target": target,
        "id_col": id_col,
        "task": P.task,
        "classes": P.classes,
        "members": list(P.members),
    }
    paths = [Path(t) for t in test] if isinstance(test, list | tuple) else [Path(test)]
    if len(paths) == 1:
        frame = _read_frame(paths[0])
        if FOLD in frame.columns and FOLD not in P.members:
            return _split_folds(frame, paths[0], like)
        return [from_frame(frame, source=str(paths[0]), **like)]
    tables = [read_table(path, **like) for path in paths]
    _check_same_rows(tables, [str(path) for path in paths], id_col)
    return tables


def _split_folds(frame: pd.DataFrame, path: Path, like: dict) -> list[Table]:
    folds = frame[FOLD]
    if folds.isna().any() or not pd.api.types.is_integer_dtype(folds):
        raise ValueError(f"{path}: column {FOLD!r} must hold integer fold numbers")
    names = sorted(folds.unique().tolist())
    tables = [
        from_frame(
            frame[folds == k].drop(columns=FOLD).reset_index(drop=True),
            source=f"{path} (fold {k})",
            **like,
        )
        for k in names
    ]
    _check_same_rows(tables, [f"{path} (fold {k})" for k in names], like["id_col"])
    return tables


def _check_same_rows(tables: list[Table], sources: list[str], id_col) -> None:
    """Per-fold tables must hold the same rows in the same order (same ids and targets)."""
    first = tables[0]
    for table, source in zip(tables[1:], sources[1:]):
        if table.predictions.n_samples != first.predictions.n_samples:
            raise ValueError(
                f"{source}: {table.predictions.n_samples} rows, however {sources[0]} has "
                f"{first.predictions.n_samples}; every fold must predict the same rows"
            )
        if id_col is not None and not np.array_equal(table.ids, first.ids):
            raise ValueError(
                f"{source}: the {id_col!r} column differs from {sources[0]}'s; every fold "
                "must list the same rows in the same order"
            )
        if (table.y is None) != (first.y is None) or (
            table.y is not None and not np.array_equal(table.y, first.y)
        ):
            raise ValueError(
                f"{source}: the target column differs from {sources[0]}'s; every fold "
                "must list the same rows in the same order"
            )


def _as_text(test):
    """The test path as text, or a list of them (one per fold)."""
    if isinstance(test, list | tuple):
        return str(test[0]) if len(test) == 1 else [str(t) for t in test]
    return str(test)


def _weights(fitted, members) -> dict[str, float] | None:
    weights = getattr(fitted, "weights_", None)
    if weights is None or isinstance(fitted, CombinerEnsemble):
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
