"""Pseudo-labelling (self-training): the ensemble labels the unlabelled rows it is sure of.

Each round cross-fits the ensemble (:class:`~ensemblex.ensemble.EnsembleClassifier`) on the
labelled rows, with pseudo-labelled rows appended to the *training* rows of the folds only,
so that every out-of-fold prediction is still scored on a true label. A confidence
threshold is chosen on those out-of-fold predictions: the lowest one above which the
labelled rows are classified with at least ``target_precision`` accuracy. Unlabelled rows
above it join the training rows of the next round; rounds stop when the out-of-fold score
no longer improves, and the ensemble of the best round is kept.

The pseudo labels are drawn **per fold**: fold ``k``'s new rows are the ones its own models
(combined) are sure of, and they train only fold ``k``'s next models. A single set labelled
by the whole ensemble would carry the labels of fold ``k``'s validation rows into fold
``k``'s training (an unlabelled near-duplicate of a validation message gets that message's
label), and the out-of-fold score that decides when to stop would then reward that leak.
Every fold model also scores the unlabelled rows as it scored its validation rows (one fold
model, unseen rows), so a threshold chosen on the latter transfers to the former. What
still sees every labelled row is the combiner (a few weights) and the threshold (one
number per class).

Nothing here reads or writes test rows; ``y_unlabelled_true`` (optional) only measures
how often the pseudo labels are right and never reaches a fit.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from ensemblex.combiners.auto import AutoCombiner, nested_predictions, outer_splits
from ensemblex.crossfit import make_splits
from ensemblex.ensemble import EnsembleClassifier
from ensemblex.metrics import get_metric

logger = logging.getLogger(__name__)

THRESHOLD_RULES = ("global", "per_class")


# ---------------------------------------------------------------- thresholds
def precision_threshold(confidence: np.ndarray, correct: np.ndarray, target_precision: float):
    """The lowest confidence ``t`` at which the rows with ``confidence >= t`` are right at
    least ``target_precision`` of the time; ``inf`` when no such ``t`` exists.

    Candidate thresholds are the observed confidences (a threshold between two of them
    selects the same rows as the higher one).

    Parameters
    ----------
    confidence : ndarray of shape (n_samples,)
    correct : ndarray of shape (n_samples,), bool
        Whether each row's predicted label is its true label.
    target_precision : float in (0, 1]

    Returns
    -------
    float

    Examples
    --------
    >>> precision_threshold(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 1, 0, 1]), 0.75)
    0.6
    >>> precision_threshold(np.array([0.9, 0.8]), np.array([0, 1]), 0.99)
    inf
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if len(confidence) == 0:
        return math.inf
    order = np.argsort(-confidence, kind="stable")
    conf, right = confidence[order], correct[order]
    precision = np.cumsum(right) / np.arange(1, len(conf) + 1)
    # a threshold selects whole groups of tied confidences: only a group's last row counts
    ends = np.append(conf[1:] < conf[:-1], True)
    feasible = np.flatnonzero(ends & (precision >= target_precision))
    return float(conf[feasible[-1]]) if len(feasible) else math.inf


def class_thresholds(
    proba: np.ndarray, codes: np.ndarray, target_precision: float, rule: str = "global"
) -> np.ndarray:
    """One confidence threshold per class from held-out probabilities with true labels.

    Parameters
    ----------
    proba : ndarray of shape (n_samples, n_classes)
        Out-of-fold class probabilities.
    codes : ndarray of shape (n_samples,)
        True class codes.
    target_precision : float
    rule : {"global", "per_class"}
        ``"global"``: one threshold over all rows (the same for every class);
        ``"per_class"``: each class's own, over the rows predicted as that class, so that
        the pseudo labels of every class (not only the majority's) reach the precision.

    Returns
    -------
    ndarray of shape (n_classes,)
        A row predicted as class ``c`` is labelled when its confidence is at least entry
        ``c`` (``inf``: never).
    """
    predicted, confidence = proba.argmax(axis=1), proba.max(axis=1)
    correct = predicted == codes
    if rule == "global":
        return np.full(proba.shape[1], precision_threshold(confidence, correct, target_precision))
    return np.array(
        [
            precision_threshold(
                confidence[predicted == c], correct[predicted == c], target_precision
            )
            for c in range(proba.shape[1])
        ]
    )


def select_confident(
    proba: np.ndarray,
    thresholds: np.ndarray,
    available: np.ndarray,
    max_rows: int,
    prior: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The rows to pseudo-label: available, at or above their predicted class's threshold,
    the most confident first, at most ``max_rows``.

    Parameters
    ----------
    proba : ndarray of shape (n_samples, n_classes)
    thresholds : ndarray of shape (n_classes,)
    available : ndarray of shape (n_samples,), bool
        Rows not pseudo-labelled yet.
    max_rows : int
    prior : ndarray of shape (n_classes,), optional
        Class shares to keep (class balance): class ``c`` gets ``floor(N * prior[c])`` rows,
        with ``N`` the largest total that every class's confident rows can fill, so that a
        majority class does not swamp the others (a class with no confident row stops the
        round).

    Returns
    -------
    rows : ndarray of int
        Row indices, most confident first.
    codes : ndarray of int
        Their pseudo labels (class codes).
    """
    predicted, confidence = proba.argmax(axis=1), proba.max(axis=1)
    eligible = available & (confidence >= thresholds[predicted])
    rows = np.flatnonzero(eligible)
    rows = rows[np.argsort(-confidence[rows], kind="stable")]
    if prior is None:
        rows = rows[:max_rows]
    else:
        counts = np.bincount(predicted[rows], minlength=proba.shape[1])
        share = np.asarray(prior, dtype=np.float64)
        present = share > 0
        total = min(max_rows, int(np.floor(np.min(counts[present] / share[present]))))
        quota = np.floor(total * share).astype(np.int64)
        # rank of each row within its class, in confidence order (vectorised cumcount)
        one_hot = predicted[rows][:, None] == np.arange(proba.shape[1])[None, :]
        rank = (np.cumsum(one_hot, axis=0) - 1)[np.arange(len(rows)), predicted[rows]]
        rows = rows[rank < quota[predicted[rows]]]
    return rows, predicted[rows]


# ---------------------------------------------------------------- the estimator
class PseudoLabeler(ClassifierMixin, BaseEstimator):
    """Self-training of a cross-fitted ensemble on labelled plus confidently pseudo-labelled
    rows (classification).

    Parameters
    ----------
    members : "default", "fast" or list
        As :class:`~ensemblex.ensemble.EnsembleClassifier` takes them (any
        :class:`~ensemblex.members.Member`: tabular, text, graph).
    combiner : "auto", a combiner name, or a combiner
    cv : int, default 5
        Cross-fitting folds over the labelled rows (pseudo-labelled rows only ever train).
    metric : str, default "auto"
        The out-of-fold score that decides whether a round helped (log-loss by default).
    max_rounds : int, default 3
        Pseudo-labelling rounds after the first fit (0: a plain ensemble).
    target_precision : float, default 0.99
        Accuracy the labelled rows above the threshold must reach (out-of-fold).
    thresholds : {"per_class", "global"}, default "per_class"
        One threshold per predicted class, or one for all (see :func:`class_thresholds`).
    class_balance : bool, default True
        Add each round's rows in the labelled rows' class shares (see
        :func:`select_confident`). Without it the confident rows are mostly of the majority
        class, and the next round's probabilities lean towards it: on SMS spam with 5% of
        the labels and TF-IDF members, global thresholds without balance made the first
        round's out-of-fold log-loss worse (.080 to .089), per-class thresholds with
        balance better (.080 to .075, then .064 and .057; bench/pseudo_labels.py).
    max_share : float in (0, 1], default 0.25
        At most this share of the unlabelled rows joins a fold per round.
    min_gain : float, default 0.0
        A round improves when it lowers the out-of-fold loss by more than this.
    patience : int, default 1
        Stop after this many rounds in a row without improvement; the best round is kept.
    random_state : int, default 0
    backend, n_jobs, ray_address
        Where the folds are fitted (as for the ensemble).

    Attributes
    ----------
    ensemble_ : EnsembleClassifier
        The ensemble of the best round (its fold ``k`` models trained on the labelled rows of
        fold ``k`` plus that fold's pseudo-labelled rows): what is deployed, saved with
        ``ensemble_.save(path)`` and loaded with ``EnsembleClassifier.load``.
    classes_ : ndarray of shape (n_classes,)
    best_round_ : int
    history_ : DataFrame
        One row per fitted round: ``round``, ``threshold`` (per class, chosen at the end of
        the previous round), ``added`` and ``pseudo_rows`` (mean over folds), ``pseudo_accuracy``
        (with ``y_unlabelled_true``), ``oof_<metric>``, ``oof_log_loss``, ``oof_accuracy``.
    pseudo_rows_ : list of ndarray
        Per fold: rows of ``X_unlabelled`` pseudo-labelled in the best round.
    pseudo_labels_ : list of ndarray
        Per fold: their labels.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"a": np.r_[rng.normal(-2, 1, 60), rng.normal(2, 1, 60)]})
    >>> y = np.repeat(["neg", "pos"], 60)
    >>> labelled = np.r_[0:10, 60:70]
    >>> unlabelled = np.setdiff1d(np.arange(120), labelled)
    >>> from sklearn.linear_model import LogisticRegression
    >>> model = PseudoLabeler([("lr", LogisticRegression())], combiner="mean", cv=2,
    ...                       max_rounds=1, n_jobs=1).fit(X.iloc[labelled], y[labelled],
    ...                                                    X.iloc[unlabelled])
    >>> model.predict(pd.DataFrame({"a": [-3.0, 3.0]})).tolist()
    ['neg', 'pos']
    """

    def __init__(
        self,
        members="default",
        combiner="auto",
        cv=5,
        metric="auto",
        max_rounds=3,
        target_precision=0.99,
        thresholds="per_class",
        class_balance=True,
        max_share=0.25,
        min_gain=0.0,
        patience=1,
        random_state=0,
        backend="local",
        n_jobs=None,
        ray_address=None,
    ):
        self.members = members
        self.combiner = combiner
        self.cv = cv
        self.metric = metric
        self.max_rounds = max_rounds
        self.target_precision = target_precision
        self.thresholds = thresholds
        self.class_balance = class_balance
        self.max_share = max_share
        self.min_gain = min_gain
        self.patience = patience
        self.random_state = random_state
        self.backend = backend
        self.n_jobs = n_jobs
        self.ray_address = ray_address

    # ------------------------------------------------------------ fit
    def fit(
        self,
        X,
        y,
        X_unlabelled,
        y_unlabelled_true=None,
        progress: Callable[[str, int, int], None] | None = None,
    ):
        """Fit rounds of the ensemble, pseudo-labelling confident unlabelled rows.

        Parameters
        ----------
        X : DataFrame of shape (n_labelled, n_columns)
        y : array-like of shape (n_labelled,)
            Class labels.
        X_unlabelled : DataFrame of shape (n_unlabelled, n_columns)
            Rows without labels, with the columns of ``X``.
        y_unlabelled_true : array-like of shape (n_unlabelled,), optional
            Their true labels, for ``history_["pseudo_accuracy"]`` only: never fitted on.
        progress : callable, optional
            ``progress(label, done, total)`` as rounds finish.

        Returns
        -------
        self
        """
        self._check_params()
        X, X_unlabelled, y, y_true = self._check_data(X, y, X_unlabelled, y_unlabelled_true)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError("y has a single class; pseudo-labelling needs at least two")
        task = "binary" if len(self.classes_) == 2 else "multiclass"
        metric = get_metric(self.metric, task)
        log_loss = get_metric("log_loss", task)
        splits = make_splits(codes, task, int(self.cv), self.random_state, classes=self.classes_)
        prior = np.bincount(codes, minlength=len(self.classes_)) / len(codes)
        max_rows = max(1, math.ceil(self.max_share * len(X_unlabelled)))
        n_folds = len(splits)
        rows = [np.empty(0, dtype=np.int64) for _ in range(n_folds)]
        labels = [np.empty(0, dtype=np.int64) for _ in range(n_folds)]
        added, threshold = 0.0, np.full(len(self.classes_), np.nan)
        history, best, waited = [], None, 0
        for round_ in range(int(self.max_rounds) + 1):
            ensemble = self._fit_round(X, codes, X_unlabelled, splits, rows, labels)
            oof = self._combined_oof(ensemble, X, codes, task)
            loss = metric.loss(codes, oof)
            history.append(
                {
                    "round": round_,
                    "threshold": [None if np.isnan(t) else float(t) for t in threshold],
                    "added": added,
                    "pseudo_rows": float(np.mean([len(r) for r in rows])),
                    "pseudo_accuracy": _pseudo_accuracy(self.classes_, rows, labels, y_true),
                    "oof_log_loss": log_loss.score(codes, oof),
                    "oof_accuracy": float(np.mean(oof.argmax(axis=1) == codes)),
                    f"oof_{metric.name}": metric.score(codes, oof),  # the stopping score
                }
            )
            if progress is not None:
                progress(f"round {round_}", round_ + 1, int(self.max_rounds) + 1)
            if best is None or loss < best[0] - self.min_gain:
                best, waited = (loss, round_, ensemble, list(rows), list(labels)), 0
            else:
                waited += 1
                if waited >= self.patience:
                    logger.info("%d round(s) without improvement; stopping", waited)
                    break
            if round_ == self.max_rounds:
                break
            threshold = class_thresholds(oof, codes, self.target_precision, self.thresholds)
            fold_proba = self._fold_probabilities(ensemble, X_unlabelled)
            new = [
                select_confident(
                    proba,
                    threshold,
                    ~np.isin(np.arange(len(X_unlabelled)), rows[k]),
                    max_rows,
                    prior if self.class_balance else None,
                )
                for k, proba in enumerate(fold_proba)
            ]
            added = float(np.mean([len(r) for r, _ in new]))
            if added == 0:
                logger.info("no unlabelled row reaches the threshold; stopping")
                break
            rows = [np.concatenate([rows[k], r]) for k, (r, _) in enumerate(new)]
            labels = [np.concatenate([labels[k], c]) for k, (_, c) in enumerate(new)]
        _, self.best_round_, self.ensemble_, best_rows, best_labels = best
        self.history_ = pd.DataFrame(history)
        self.pseudo_rows_ = best_rows
        self.pseudo_labels_ = [self.classes_[c] for c in best_labels]
        return self

    def _fit_round(self, X, codes, X_unlabelled, splits, rows, labels) -> EnsembleClassifier:
        """The ensemble on the labelled rows, each fold's pseudo-labelled rows appended (as
        rows of their own, since folds may label a row differently) to its training rows."""
        parts, y_parts, fold_splits, start = [X], [codes], [], len(X)
        for (train, valid), r, c in zip(splits, rows, labels):
            parts.append(X_unlabelled.iloc[r])
            y_parts.append(c)
            fold_splits.append((np.concatenate([train, start + np.arange(len(r))]), valid))
            start += len(r)
        table = pd.concat(parts, ignore_index=True)
        target = self.classes_[np.concatenate(y_parts)]
        ensemble = EnsembleClassifier(
            members=self.members,
            combiner=self.combiner,
            cv=fold_splits,
            metric=self.metric,
            random_state=self.random_state,
            backend=self.backend,
            n_jobs=self.n_jobs,
            ray_address=self.ray_address,
        )
        return ensemble.fit(table, target)

    def _combined_oof(self, ensemble, X, codes, task) -> np.ndarray:
        """The combined out-of-fold probabilities ``(n_labelled, n_classes)``, the combiner
        itself held out too (nested: each row combined by a combiner fitted without it), so
        that neither the threshold nor the stopping rule sees an in-sample prediction."""
        combiner = ensemble.combiner_
        if isinstance(combiner, AutoCombiner):
            combiner = combiner.candidate(combiner.method_)
        outer = outer_splits(codes, task, int(self.cv), self.random_state)
        return nested_predictions(
            combiner,
            ensemble.oof_,
            ensemble.oof_labels_,
            outer,
            X=ensemble.combiner_features(X),
        )

    @staticmethod
    def _fold_probabilities(ensemble, X_unlabelled) -> list[np.ndarray]:
        """Each fold's combined probabilities on the unlabelled rows: fold ``k``'s models
        through the combiner, as its out-of-fold rows were scored."""
        features = ensemble.combiner_features(X_unlabelled)
        return [
            ensemble.combiner_.predict(P, X=features)
            for P in ensemble.member_fold_predictions(X_unlabelled)
        ]

    # ------------------------------------------------------------ predict
    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities ``(n_samples, n_classes)`` of the best round's ensemble."""
        self._check_fitted()
        return self.ensemble_.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        """Most probable class labels ``(n_samples,)``."""
        self._check_fitted()
        return self.ensemble_.predict(X)

    # ------------------------------------------------------------ checks
    def _check_fitted(self):
        if not hasattr(self, "ensemble_"):
            raise RuntimeError("PseudoLabeler is not fitted; call fit first")

    def _check_params(self) -> None:
        checks = [
            ("cv", isinstance(self.cv, Integral) and self.cv >= 2, "an integer >= 2"),
            (
                "max_rounds",
                isinstance(self.max_rounds, Integral) and self.max_rounds >= 0,
                "an integer >= 0",
            ),
            (
                "target_precision",
                isinstance(self.target_precision, Real) and 0 < self.target_precision <= 1,
                "a number in (0, 1]",
            ),
            ("thresholds", self.thresholds in THRESHOLD_RULES, f"one of {THRESHOLD_RULES}"),
            (
                "max_share",
                isinstance(self.max_share, Real) and 0 < self.max_share <= 1,
                "a number in (0, 1]",
            ),
            (
                "patience",
                isinstance(self.patience, Integral) and self.patience >= 1,
                "an integer >= 1",
            ),
            (
                "min_gain",
                isinstance(self.min_gain, Real) and self.min_gain >= 0,
                "a number >= 0",
            ),
        ]
        for name, ok, expected in checks:
            if not ok or isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"{name} must be {expected}, however: {name}={getattr(self, name)!r}"
                )

    @staticmethod
    def _check_data(X, y, X_unlabelled, y_true):
        for name, frame in (("X", X), ("X_unlabelled", X_unlabelled)):
            if not isinstance(frame, pd.DataFrame):
                raise TypeError(
                    f"{name} must be a pandas DataFrame, however: type={type(frame).__name__}"
                )
        if len(X_unlabelled) == 0:
            raise ValueError("X_unlabelled must hold at least one row, however: 0 rows")
        missing = [c for c in X.columns if c not in X_unlabelled.columns]
        if missing:
            raise ValueError(f"X_unlabelled must have the columns of X, however it lacks {missing}")
        X_unlabelled = X_unlabelled[list(X.columns)]
        y = np.asarray(y)
        if y.shape != (len(X),):
            raise ValueError(f"y must have shape ({len(X)},), however: y.shape={y.shape}")
        if pd.isna(y).any():
            raise ValueError(f"y is missing at row {int(np.argmax(pd.isna(y)))}")
        if y.dtype.kind == "f" and not np.all(y == np.round(y)):
            raise ValueError(
                "y must hold class labels: pseudo-labelling keeps the rows whose class the "
                "ensemble is sure of, which a regression target does not have, however: y "
                "holds non-integer numbers"
            )
        if y_true is not None:
            y_true = np.asarray(y_true)
            if y_true.shape != (len(X_unlabelled),):
                raise ValueError(
                    f"y_unlabelled_true must have shape ({len(X_unlabelled)},), however: "
                    f"y_unlabelled_true.shape={y_true.shape}"
                )
        return X.reset_index(drop=True), X_unlabelled.reset_index(drop=True), y, y_true


def _pseudo_accuracy(classes, rows, labels, y_true) -> float:
    """Share of right pseudo labels over every fold's (row, label) pairs (nan without true
    labels or pseudo rows)."""
    if y_true is None or not sum(len(r) for r in rows):
        return math.nan
    r, c = np.concatenate(rows), np.concatenate(labels)
    return float(np.mean(classes[c] == y_true[r]))
