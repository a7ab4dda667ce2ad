"""Choose a combiner by nested cross-validation on the out-of-fold rows."""

from __future__ import annotations

import time
from dataclasses import dataclass
from numbers import Integral
from typing import ClassVar

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.utils._param_validation import Interval, StrOptions

from ensemblex.combiners.averaging import BestSingle, Mean
from ensemblex.combiners.base import Combiner
from ensemblex.combiners.greedy import GreedySelection
from ensemblex.combiners.stacking import Stacking
from ensemblex.combiners.weighted import Weighted
from ensemblex.predictions import Predictions
from ensemblex.tasks import encode_labels, is_classification

BEST_SINGLE = "best"


def default_candidates(metric="auto", random_state=0) -> dict[str, Combiner]:
    """The candidates ``AutoCombiner`` compares by default, keyed by their CLI names."""
    return {
        BEST_SINGLE: BestSingle(metric=metric),
        "mean": Mean(metric=metric),
        "weighted": Weighted(metric=metric),
        "greedy": GreedySelection(metric=metric),
        "stack": Stacking(metric=metric, random_state=random_state),
        "stack_regularized": Stacking.regularized(metric=metric, random_state=random_state),
    }


def outer_splits(y: np.ndarray, task: str, cv: int, random_state) -> list:
    """Outer folds over the out-of-fold rows (stratified for classification)."""
    if is_classification(task):
        counts = np.bincount(y)
        folds = min(cv, int(counts[counts > 0].min())) if cv > 1 else cv
        if folds >= 2:
            splitter = StratifiedKFold(folds, shuffle=True, random_state=random_state)
            return list(splitter.split(np.zeros(len(y)), y))
    return list(KFold(cv, shuffle=True, random_state=random_state).split(np.zeros(len(y))))


def nested_predictions(combiner: Combiner, P: Predictions, y, splits, sample_weight=None):
    """Predictions for every row from a clone of ``combiner`` fitted without that row's fold.

    Output: (n_samples, n_outputs). ``y`` holds labels as ``combiner.fit`` takes them.
    """
    out = np.zeros((P.n_samples, P.n_outputs))
    for train, test in splits:
        sw = None if sample_weight is None else sample_weight[train]
        fitted = clone(combiner).fit(P.take(train), y[train], sample_weight=sw)
        out[test] = fitted.predict(P.take(test))
    return out


@dataclass(frozen=True)
class NestedScore:
    """A candidate's nested cross-validated score, its loss (lower is better) and seconds."""

    score: float
    loss: float
    seconds: float


def nested_scores(
    candidates: dict[str, Combiner], P: Predictions, y, metric, splits, sample_weight=None
) -> dict[str, NestedScore]:
    """Score each candidate on held-out outer folds, pooled over all rows.

    ``y`` holds labels as ``fit`` takes them; ``metric`` is a resolved :class:`Metric`.
    """
    codes = encode_labels(y, P.classes) if is_classification(P.task) else y
    results = {}
    for name, candidate in candidates.items():
        start = time.perf_counter()
        pred = nested_predictions(candidate, P, y, splits, sample_weight)
        results[name] = NestedScore(
            score=metric.score(codes, pred, sample_weight),
            loss=metric.loss(codes, pred, sample_weight),
            seconds=time.perf_counter() - start,
        )
    return results


class AutoCombiner(Combiner):
    """Pick the combiner with the best nested cross-validated score, then refit it.

    Each candidate is refit inside every outer fold of the out-of-fold rows and scored on
    the held-out fold; the pooled held-out score ranks them. The best single member is
    always a candidate, so a combiner whose nested score is worse is never chosen; ties go
    to the earlier candidate (the best single member first).

    With ``select="first"`` the first of ``candidates`` is refit whatever the scores: every
    candidate, the best single member included, is still scored, so a caller that asked for
    one method gets it together with its nested score against the best member.

    Parameters
    ----------
    candidates : "default", list of str, or dict of str to Combiner
        Names from :func:`default_candidates`, or combiners keyed by a name.
    metric : str or Metric, default "auto"
    cv : int, default 5
        Outer folds (fewer for a class with fewer rows, stratified for classes).
    random_state : int, default 0
    select : {"best", "first"}, default "best"
        Refit the candidate with the best nested score, or the first of ``candidates``.

    Attributes
    ----------
    method_ : str
        Name of the chosen candidate.
    combiner_ : Combiner
        The chosen candidate refit on all rows.
    scores_ : dict of str to float
        Every candidate's nested score (metric orientation).
    fit_seconds_ : dict of str to float
        Seconds each candidate spent in the nested cross-validation.
    n_splits_ : int
        Outer folds used: ``cv``, or fewer when a class has fewer rows.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=60)
    >>> P = np.stack([y + rng.normal(scale=s, size=60) for s in (0.3, 0.5, 2.0)], axis=1)
    >>> auto = AutoCombiner(candidates=["mean"], cv=3, select="first").fit(P[..., None], y)
    >>> auto.method_, sorted(auto.scores_)
    ('mean', ['best', 'mean'])
    """

    _parameter_constraints: ClassVar[dict] = {
        **Combiner._parameter_constraints,
        "candidates": [StrOptions({"default"}), list, tuple, dict],
        "cv": [Interval(Integral, 2, None, closed="left")],
        "random_state": ["random_state"],
        "select": [StrOptions({"best", "first"})],
    }

    def __init__(self, candidates="default", metric="auto", cv=5, random_state=0, select="best"):
        self.candidates = candidates
        self.metric = metric
        self.cv = cv
        self.random_state = random_state
        self.select = select

    def _candidate_dict(self) -> dict[str, Combiner]:
        pool = default_candidates(self.metric, self.random_state)
        if isinstance(self.candidates, dict):
            chosen = dict(self.candidates)
        elif self.candidates == "default":
            chosen = pool
        else:
            unknown = [c for c in self.candidates if c not in pool]
            if unknown:
                raise ValueError(f"candidates must be names among {list(pool)}, however: {unknown}")
            chosen = {name: pool[name] for name in self.candidates}
        if not chosen:
            raise ValueError(f"candidates must not be empty, however: {self.candidates!r}")
        return chosen

    def _fit(self, values, y, sample_weight):
        P = Predictions(values, self.members_, self.task_, classes=self.classes_)
        labels = self.classes_[y] if is_classification(self.task_) else y
        splits = outer_splits(y, self.task_, int(self.cv), self.random_state)
        self.n_splits_ = len(splits)  # fewer than cv when a class has fewer rows
        requested = self._candidate_dict()
        candidates = requested
        if BEST_SINGLE not in candidates:
            candidates = {BEST_SINGLE: BestSingle(metric=self.metric), **candidates}
        results = nested_scores(candidates, P, labels, self.metric_, splits, sample_weight)
        self.scores_ = {name: r.score for name, r in results.items()}
        self.fit_seconds_ = {name: r.seconds for name, r in results.items()}
        if self.select == "first":
            self.method_ = next(iter(requested))
        else:
            # min() keeps the first of equal losses, so the best single member wins ties.
            self.method_ = min(results, key=lambda name: results[name].loss)
        self.combiner_ = clone(candidates[self.method_]).fit(P, labels, sample_weight=sample_weight)

    def _predict(self, values):
        return self.combiner_._predict(values)

    @property
    def weights_(self) -> np.ndarray:
        """Member weights of the chosen combiner, where it has them."""
        return self.combiner_.weights_
