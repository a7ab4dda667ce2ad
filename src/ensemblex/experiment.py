"""The main job behind ``ensemblex run``: split, cross-fit, combine, score, write the run.

The held-out test split is only scored: members and combiners never see its labels.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import PredefinedSplit, train_test_split

from ensemblex.combiners import available_candidates
from ensemblex.ensemble import Ensemble, EnsembleClassifier, EnsembleRegressor
from ensemblex.predictions import Predictions
from ensemblex.runs import RunFolder
from ensemblex.tasks import detect_task, encode_labels


def run_experiment(
    frame: pd.DataFrame,
    target: str,
    out,
    *,
    members="default",
    task: str = "auto",
    folds: int = 5,
    test_size: float = 0.2,
    backend: str = "local",
    ray_address: str | None = None,
    n_jobs: int | None = None,
    seed: int = 0,
    refit_full: bool = False,
    combiner="auto",
    views: dict | None = None,
    split_column: str | None = None,
    source: str = "data",
    zoo_label: str | None = None,
    on_task: Callable[[str], None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Hold out a test split, fit an ensemble on the rest, score both, write the run folder.

    Parameters
    ----------
    frame : DataFrame
        The whole table, target included.
    target : str
        Target column.
    out : path
        Run folder (:class:`ensemblex.runs.RunFolder`); its ``work/`` makes reruns resume.
    members : str, list or callable
        A zoo name or members, as :class:`ensemblex.ensemble.EnsembleClassifier` takes them,
        or ``members(task)`` returning them once the task is known.
    task : {"auto", "regression", "binary", "multiclass"}
        Checked against the target before anything is fitted (:func:`ensemblex.tasks.detect_task`).
    refit_full : bool
        Deploy each member the combiner uses as one model refit on all training rows
        instead of its fold models; the test score of both is reported.
    combiner : "auto", a combiner name, or a combiner
        As :class:`ensemblex.ensemble.EnsembleClassifier` takes it.
    views : dict of str to list of str, optional
        Multi-view members: the zoo fitted once per view (named columns), members named
        ``view/member``.
    split_column : str, optional
        A predefined split instead of ``test_size`` and ``folds``: the column's ``train``
        rows fit the members, its ``val`` (or ``valid``, ``validation``) rows fit the
        combiner on the members' predictions of them, its ``test`` rows are scored; other
        rows (``unlabeled``, say) are not fitted on, and their target may be missing (graph
        members still see their features and edges).
    source : str
        Name of the table in messages and in the summary.
    on_task, progress : callable, optional
        ``on_task(task)`` once the task is known; ``progress(label, done, total)`` as folds
        finish.

    Returns
    -------
    dict
        The summary written to ``leaderboard.json``.
    """
    start = time.perf_counter()
    if target not in frame.columns:
        raise ValueError(
            f"{source}: unknown target column {target!r}; columns are {list(frame.columns)}"
        )
    roles = None if split_column is None else split_roles(frame, split_column, source)
    used = frame if roles is None else frame[roles != ""]
    y_all = used[target]
    if y_all.isna().any():
        raise ValueError(
            f"{source}: target column {target!r} is missing at row "
            f"{int(used.index[np.argmax(y_all.isna().to_numpy())])}"
        )
    task = detect_task(y_all, task, source=source)
    if on_task is not None:
        on_task(task)
    if callable(members):
        members = members(task)
    if roles is None:
        stratify = None if task == "regression" else y_all
        X, X_test, y, y_test = train_test_split(
            frame.drop(columns=target),
            y_all.to_numpy(),
            test_size=test_size,
            random_state=seed,
            stratify=stratify,
        )
        cv = folds
    else:
        # the members are fitted on the "train" rows, the combiner on their predictions of
        # the "val" rows, and the "test" rows are only scored
        fit_rows = frame[(roles == "train") | (roles == "val")]
        test_rows = frame[roles == "test"]
        X = fit_rows.drop(columns=[target, split_column])
        X_test = test_rows.drop(columns=[target, split_column])
        y, y_test = fit_rows[target].to_numpy(), test_rows[target].to_numpy()
        cv = PredefinedSplit(np.where(roles[roles.isin(["train", "val"])] == "val", 0, -1))
    run = RunFolder(out)
    with run.lock():
        estimator = EnsembleRegressor if task == "regression" else EnsembleClassifier
        model = estimator(
            members=members,
            cv=cv,
            random_state=seed,
            backend=backend,
            n_jobs=n_jobs,
            ray_address=ray_address,
            work_dir=run.work_dir,
            refit_full=refit_full,
            combiner=combiner,
            views=views,
        )
        model.fit(X.reset_index(drop=True), y, progress=progress)
        P_test_folds = model.crossfit_fold_predictions(X_test)
        P_test = mean_of_folds(P_test_folds)
        board = test_leaderboard(model, P_test_folds, y_test, X_test)
        deployed, test_output = deployed_summary(model, X_test, y_test)
        summary = {
            "data": str(source),
            "target": target,
            "task": task,
            "zoo": zoo_label if zoo_label is not None else str(members),
            "folds": folds if roles is None else "predefined",
            "test_size": test_size if roles is None else len(X_test) / (len(X) + len(X_test)),
            **({} if roles is None else {"split": _split_summary(roles, split_column)}),
            "seed": seed,
            "backend": backend,
            "metric": model.metric_.name,
            "greater_is_better": model.metric_.greater_is_better,
            "chosen": getattr(model.combiner_, "method_", type(model.combiner_).__name__),
            "rows": {"train": len(X), "test": len(X_test)},
            "columns": {
                "numeric": model.schema_.numeric,
                "categorical": model.schema_.categorical,
            },
            "dropped_columns": model.schema_.dropped,
            "leaderboard": json.loads(board.to_json(orient="records")),
            "deployed": deployed,
            **_views_summary(model),
            "seconds": time.perf_counter() - start,
        }
        tables = {
            "oof": (model.oof_, model.oof_labels_),
            "test": (P_test, y_test),
            "test_folds": (P_test_folds, y_test),
        }
        run.write(model, tables, summary, test_output=test_output)
        from ensemblex.report import build_report

        build_report(Path(out))
    return summary


SPLIT_ROLES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}


def split_roles(frame: pd.DataFrame, column: str, source: str = "data") -> pd.Series:
    """Each row's role in a predefined split: ``"train"``, ``"val"``, ``"test"`` or ``""``
    (any other value: a row that is not fitted on nor scored).

    >>> split_roles(pd.DataFrame({"s": ["train", "val", "test", "unlabeled"]}), "s").tolist()
    ['train', 'val', 'test', '']
    """
    if column not in frame.columns:
        raise ValueError(f"{source}: unknown split column {column!r}; columns are {list(frame)}")
    roles = frame[column].astype("string").str.strip().str.lower().map(SPLIT_ROLES).fillna("")
    missing = [role for role in ("train", "val", "test") if not (roles == role).any()]
    if missing:
        values = sorted(map(str, frame[column].unique()))[:10]
        raise ValueError(
            f"{source}: split column {column!r} must have train, val and test rows, however "
            f"it has no {' or '.join(missing)} rows (values: {values})"
        )
    return roles.astype(object)


def _split_summary(roles: pd.Series, column: str) -> dict:
    counts = roles.value_counts()
    return {
        "column": column,
        "rows": {role or "other": int(n) for role, n in counts.items()},
    }


def deployed_summary(model: Ensemble, X_test, y_test) -> tuple[dict, np.ndarray]:
    """What the saved model runs and how it scores on the test rows: the members the
    combiner uses, as fold models or refit on all rows (``refit_full``), with its test
    score and prediction time (the fold-model ensemble's score is in the leaderboard);
    and its outputs on the test rows ``(n_test, n_outputs)``."""
    y = encode_labels(y_test, model.classes_) if model.classes_ is not None else y_test
    start = time.perf_counter()
    outputs = model._predict_outputs(X_test)
    seconds = time.perf_counter() - start
    deployed = {
        "refit_full": bool(model.refit_full),
        "members": [m.name for m in model.fitted_members_],
        "left_out": [
            m.name
            for m in model.fold_members_
            if m.name not in {d.name for d in model.fitted_members_}
        ],
        "models": sum(len(m.folds) for m in model.fitted_members_),
        "test_score": model.metric_.score(y, outputs),
        "predict_seconds_per_row": seconds / max(len(X_test), 1),
    }
    if model.classes_ is not None:
        deployed["test_accuracy"] = float(np.mean(outputs.argmax(axis=1) == y))
    if model.refit_seconds_ is not None:
        deployed["refit_seconds"] = float(sum(model.refit_seconds_.values()))
    return deployed, outputs


def _views_summary(model: Ensemble) -> dict:
    """The views and the combiner's weight summed per view (where it is a weighted mean)."""
    if model.views_ is None:
        return {}
    from ensemblex.combiners.base import mixture_weights
    from ensemblex.members.views import view_weights

    weights = mixture_weights(model.combiner_)
    return {
        "views": model.views_,
        "view_weights": None if weights is None else view_weights(model.member_names_, weights),
    }


def mean_of_folds(folds: list[Predictions]) -> Predictions:
    """The members' predictions averaged over the fold models (what ``predict`` used to see)."""
    total = folds[0].values
    for P in folds[1:]:
        total = total + P.values
    first = folds[0]
    return Predictions(
        total / len(folds), first.members, first.task, classes=first.classes, source="test rows"
    )


def test_leaderboard(
    model: Ensemble, P_test_folds: list[Predictions], y_test, X_test=None
) -> pd.DataFrame:
    """The model's leaderboard with every member's and every combiner candidate's score on
    the held-out rows.

    Members are scored on the mean of their fold models; combiners fold-consistently
    (:meth:`~ensemblex.combiners.base.Combiner.predict_folds`), as the model predicts.
    Candidates are refit on all OOF rows (the chosen one already is) and never see test
    labels; the test split is only scored. ``X_test``: the test rows' features, for
    combiners that read them. Classification rows also get ``test_accuracy``.
    """
    metric = model.metric_
    y = encode_labels(y_test, model.classes_) if model.classes_ is not None else y_test
    board = model.leaderboard_.copy()
    P_test = mean_of_folds(P_test_folds)
    member_scores = metric.score_batch(y, P_test.values.transpose(1, 0, 2))
    scores = dict(zip(P_test.members, member_scores))
    # classification: accuracy beside the primary metric, as papers report it
    accuracy = {}
    if model.classes_ is not None:
        hits = P_test.values.argmax(axis=2) == np.asarray(y)[:, None]
        accuracy = dict(zip(P_test.members, map(float, hits.mean(axis=0))))
    combiner = model.combiner_
    chosen = getattr(combiner, "method_", None)
    train_features = getattr(model, "_fit_features", None)
    test_features = None if X_test is None else model.combiner_features(X_test)
    for name in board.loc[board["kind"] != "member", "model"]:
        start = time.perf_counter()
        if name == chosen:
            fitted = combiner
        else:
            fitted = (
                combiner.candidate(name)
                if hasattr(combiner, "candidate")
                else clone(available_candidates(metric, model.random_state)[name])
            )
            fitted = fitted.fit(model.oof_, model.oof_labels_, X=train_features)
        outputs = fitted.predict_folds(P_test_folds, X=test_features)
        scores[name] = metric.score(y, outputs)
        if model.classes_ is not None:
            accuracy[name] = float(np.mean(outputs.argmax(axis=1) == y))
        if name != chosen:
            board.loc[board["model"] == name, "fit_seconds"] = time.perf_counter() - start
    board["test_score"] = board["model"].map(scores)
    if model.classes_ is not None:
        board["test_accuracy"] = board["model"].map(accuracy)
    return board
