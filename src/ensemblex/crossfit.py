"""K-fold cross-fitting: out-of-fold predictions of every member, fold models kept on disk."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold

from ensemblex.executors import run_tasks
from ensemblex.labels import REFIT_FULL
from ensemblex.members.base import FoldContext, Member, load_member
from ensemblex.predictions import VALUE_OUTPUTS, Predictions
from ensemblex.preprocessing import Schema
from ensemblex.store import RunStore

FULL = "full"  # the fold name of a member refit on all training rows


@dataclass(frozen=True)
class FoldTask:
    """One (member, fold) to fit: everything a worker process needs. ``fold`` is
    :data:`FULL` and ``valid`` None for a refit on all rows (no held-out predictions)."""

    member: Member
    fold: int | str
    train: np.ndarray
    valid: np.ndarray | None


def make_splits(y: np.ndarray, task: str, folds: int, random_state: int, classes=None) -> list:
    """K folds over the training rows, stratified for classification.

    ``y`` holds class codes for classification; ``classes`` (their labels) name a class that
    is too rare in the error.
    """
    if folds < 2 or folds > len(y):
        raise ValueError(f"folds must be between 2 and the {len(y)} rows, however: folds={folds}")
    if task == "regression":
        splitter = KFold(folds, shuffle=True, random_state=random_state)
    else:
        counts = np.bincount(y)
        if counts.min() < folds:
            code = int(counts.argmin())
            label = np.asarray(classes)[code] if classes is not None else f"code {code}"
            label = label.item() if isinstance(label, np.generic) else label
            raise ValueError(
                f"class {label!r} has {int(counts.min())} rows; {folds}-fold cross-fitting "
                f"needs at least {folds} rows per class (use fewer folds, merge rare classes, "
                "or --task regression for an ordered target)"
            )
        splitter = StratifiedKFold(folds, shuffle=True, random_state=random_state)
    return list(splitter.split(np.zeros(len(y)), y))


def check_splits(splits: list, n_rows: int) -> list:
    """Given ``(train, valid)`` row-index pairs, checked: integer rows in range, disjoint
    within a pair, each row validated at most once (it has one out-of-fold prediction).

    >>> check_splits([([0, 1], [2, 3])], 5)[0][1]
    array([2, 3])
    """
    if not splits:
        raise ValueError("cv must give at least one (train, valid) split, however: none")
    checked, seen = [], np.zeros(n_rows, dtype=bool)
    for k, pair in enumerate(splits):
        try:
            train, valid = (np.asarray(part) for part in pair)
        except (TypeError, ValueError):
            raise ValueError(f"cv split {k} must be a (train, valid) pair of row indices") from None
        for part, what in ((train, "train"), (valid, "valid")):
            if part.ndim != 1 or len(part) == 0 or not np.issubdtype(part.dtype, np.integer):
                raise ValueError(
                    f"cv split {k}: {what} rows must be a non-empty 1-d array of row indices, "
                    f"however: {part!r}"
                )
            if part.min() < 0 or part.max() >= n_rows:
                raise ValueError(
                    f"cv split {k}: {what} rows must lie in [0, {n_rows}), however: "
                    f"{int(part.min())}..{int(part.max())}"
                )
        if np.intersect1d(train, valid).size or seen[valid].any() or len(set(valid)) < len(valid):
            raise ValueError(
                f"cv split {k}: a row is validated twice or both trained and validated on"
            )
        seen[valid] = True
        checked.append((train.astype(np.int64), valid.astype(np.int64)))
    return checked


def fit_fold(
    task_: FoldTask,
    X: pd.DataFrame,
    y: np.ndarray,
    context: FoldContext,
    store: RunStore,
    n_threads: int,
) -> str:
    """Fit one member on one fold's training rows and write it, with its held-out
    predictions, to the store. Runs in a worker process."""
    member = task_.member
    context = replace(context, n_threads=n_threads)
    start = time.perf_counter()
    try:
        fitted = member.fit(X.iloc[task_.train], y[task_.train], context)
    except (ValueError, TypeError):
        raise
    except Exception as exc:  # a library's own error (CatBoostError, LightGBMError, ...)
        detail = " ".join(str(exc).split())[:300]
        raise ValueError(
            f"member {member.name!r} failed to fit on fold {task_.fold} "
            f"({type(exc).__name__}: {detail})"
        ) from exc
    fit_seconds = time.perf_counter() - start
    # a refit on all rows has no held-out rows: its predict time is taken on training rows
    X_valid = X.iloc[task_.valid] if task_.valid is not None else X.iloc[task_.train[:256]]

    def write(folder: Path) -> dict:
        # The held-out predictions come from the member as reloaded from disk, so that a
        # resumed run and a saved ensemble see exactly the numbers a fresh run sees.
        fitted.save(folder)
        reloaded = load_member(folder)
        start = time.perf_counter()
        reloaded.predict(X_valid.iloc[:256])
        per_row = (time.perf_counter() - start) / min(len(X_valid), 256)
        if task_.valid is not None:
            np.save(folder / "oof.npy", reloaded.predict(X_valid), allow_pickle=False)
        return {
            "family": fitted.family,
            "seconds": {"fit": fit_seconds, "predict_per_row": per_row},
        }

    store.write_fold(member.name, task_.fold, write)
    return f"{member.name}/{store.fold_dir(member.name, task_.fold).name}"


def _fit_pending(
    pending: list[FoldTask],
    total: int,
    X,
    y,
    context: FoldContext,
    store: RunStore,
    prefix: str,
    *,
    backend: str,
    n_jobs: int | None,
    ray_address: str | None,
    progress: Callable[[str, int, int], None] | None,
) -> None:
    """Fit the pending tasks on the executor, reporting ``progress(prefix + label, done,
    total)`` as each finishes (first ``prefix + "resumed"`` for what the store held)."""
    done = total - len(pending)
    if progress is not None:
        progress(f"{prefix}resumed", done, total)
    for label in run_tasks(
        fit_fold,
        pending,
        X,
        y,
        context,
        store,
        backend=backend,
        n_jobs=n_jobs,
        ray_address=ray_address,
    ):
        done += 1
        if progress is not None:
            progress(f"{prefix}{label}", done, total)


def crossfit(
    members: list[Member],
    X: pd.DataFrame,
    y: np.ndarray,
    schema: Schema,
    task: str,
    splits: list,
    store: RunStore,
    *,
    classes=None,
    backend: str = "local",
    n_jobs: int | None = None,
    ray_address: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[Predictions, dict]:
    """Cross-fit every member; return OOF predictions and seconds per member (column).

    The predictions are those of the rows some split validates, in row order: all rows for
    K folds, the held-out rows for a predefined hold-out.

    Folds already in ``store`` (and intact) are not refit. ``X`` holds every column of the
    table (each member reads what it needs); ``y`` holds class codes for classification.
    ``progress(label, done, total)`` is called as folds finish.
    """
    outputs = member_outputs(members, task)  # before fitting: mixed outputs are refused
    pending = [
        FoldTask(member, k, train, valid)
        for member in members
        for k, (train, valid) in enumerate(splits)
        if not store.is_done(member.name, k)
    ]
    context = FoldContext(task, schema, n_classes=0 if classes is None else len(classes))
    _fit_pending(
        pending,
        len(members) * len(splits),
        X,
        y,
        context,
        store,
        "",
        backend=backend,
        n_jobs=n_jobs,
        ray_address=ray_address,
        progress=progress,
    )
    n_outputs = len(classes) if task != "regression" else len(outputs or VALUE_OUTPUTS)
    columns = [member.column_names() for member in members]
    values = np.zeros((len(y), sum(map(len, columns)), n_outputs))
    seconds, costs, start = {}, [], 0
    for member, names in zip(members, columns):
        fit_s, per_row = 0.0, []
        block = slice(start, start + len(names))
        for k, (_, valid) in enumerate(splits):
            oof, meta = store.read_fold(member.name, k)
            values[valid, block] = oof.reshape(len(valid), len(names), n_outputs)
            fit_s += meta["seconds"]["fit"]
            per_row.append(meta["seconds"]["predict_per_row"])
        # members computed together (one network's heads) share its fit and predict time
        # evenly; the seconds are keyed by member (column) name. A head cannot run alone at
        # that share, so a cascade over one network's heads would undercount its cost.
        for name in names:
            seconds[name] = {
                "fit": fit_s / len(names),
                "predict_per_row": float(np.mean(per_row)) / len(names),
            }
            costs.append(seconds[name]["predict_per_row"] * len(splits))
        start += len(names)
    covered = np.unique(np.concatenate([valid for _, valid in splits]))
    P = Predictions(
        values[covered] if len(covered) < len(y) else values,
        [name for names in columns for name in names],
        task,
        classes=classes,
        costs=costs,
        outputs=outputs,
        source="out-of-fold predictions",
    )
    return P, seconds


def member_outputs(members: list[Member], task: str) -> tuple[str, ...] | None:
    """The outputs every regression member predicts (:meth:`Member.outputs`): None for a
    value, or names such as ``("mean", "var")``; None for classification.

    Members that predict different things are refused: a point prediction is no Gaussian of
    variance zero (it has no density, so the mixture's likelihood is undefined), and
    combiners read one kind of output.
    """
    if task != "regression":
        return None
    found = {member.name: member.outputs() or VALUE_OUTPUTS for member in members}
    kinds = set(found.values())
    if len(kinds) > 1:
        listing = ", ".join(f"{name}: {out}" for name, out in found.items())
        raise ValueError(
            "members must all predict the same outputs (all values, or all Gaussians "
            f"('mean', 'var')), however: {listing}"
        )
    outputs = kinds.pop() if kinds else VALUE_OUTPUTS
    return None if outputs == VALUE_OUTPUTS else outputs


def refit_full(
    members: list[Member],
    X: pd.DataFrame,
    y: np.ndarray,
    schema: Schema,
    task: str,
    store: RunStore,
    *,
    classes=None,
    backend: str = "local",
    n_jobs: int | None = None,
    ray_address: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, float]:
    """Refit every member once on all training rows (AutoGluon's ``refit_full``), in
    parallel like the folds, into the store's :data:`FULL` folder of each member; a refit
    already there (and intact) is kept. Returns each member's refit seconds.

    The refit models are not themselves validated: their settings were, on the folds.
    """
    everything = np.arange(len(y))
    pending = [
        FoldTask(member, FULL, everything, None)
        for member in members
        if not store.is_done(member.name, FULL)
    ]
    context = FoldContext(task, schema, n_classes=0 if classes is None else len(classes))
    _fit_pending(
        pending,
        len(members),
        X,
        y,
        context,
        store,
        f"{REFIT_FULL}: ",
        backend=backend,
        n_jobs=n_jobs,
        ray_address=ray_address,
        progress=progress,
    )
    seconds = {}
    for member in members:
        _, meta = store.read_fold(member.name, FULL, only=())
        seconds[member.name] = float(meta["seconds"]["fit"])
    return seconds
