"""Choose a combiner by nested cross-validation on the out-of-fold rows."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from joblib import effective_n_jobs
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.utils._param_validation import Interval, StrOptions
from threadpoolctl import threadpool_limits

from ensemblex.combiners.averaging import BestSingle, Mean
from ensemblex.combiners.base import Combiner
from ensemblex.combiners.features import take_rows
from ensemblex.combiners.greedy import GreedySelection
from ensemblex.combiners.layered import CombinerEnsemble
from ensemblex.combiners.pooling import Pooling
from ensemblex.combiners.stacking import Stacking
from ensemblex.combiners.weighted import Weighted
from ensemblex.predictions import Predictions
from ensemblex.tasks import encode_labels, is_classification

BEST_SINGLE = "best"
ENSEMBLE = "ensemble"


STACKING = ("stack", "stack_regularized", "stack_spline")
# Stacking on a spline basis of the members' predictions: nested and test RMSE below linear
# stacking on both regression zoos of bench/combiners.py (California 42,199 against 42,382,
# diamonds 504.8 against 512.9); on churn (logits, logistic meta-model) it was worse than
# linear stacking (test log-loss .3407 against .3368), so classification leaves it out.
REGRESSION_ONLY = ("stack_spline",)


def default_candidates(
    metric="auto", random_state=0, task=None, features: bool = False
) -> dict[str, Combiner]:
    """The candidates ``AutoCombiner`` compares by default, keyed by their CLI names.

    Cheapest first, so that a time limit cuts the costly ones. ``stack_spline`` is a
    candidate for regression only. For a multiclass ``task`` the stacking candidates are
    left out (they stay available by name): their
    multinomial meta-model has one column per member and class, and on the letter zoo (32
    members, 26 classes) it took 15x the log-linear pool's fit time for the same test log-loss
    (.0713 against .0716), on wine quality (7 classes) 60x for a worse one (.801 against .788).
    """
    candidates = {
        BEST_SINGLE: BestSingle(metric=metric),
        "mean": Mean(metric=metric),
        "greedy": GreedySelection(metric=metric),
        "weighted": Weighted(metric=metric),
        "pool": Pooling(metric=metric),
        "stack": Stacking(metric=metric, random_state=random_state),
        "stack_regularized": Stacking.regularized(metric=metric, random_state=random_state),
        "stack_spline": Stacking(basis="spline", metric=metric, random_state=random_state),
    }
    if task == "multiclass":
        candidates = {k: v for k, v in candidates.items() if k not in STACKING}
    if task is not None and task != "regression":
        candidates = {k: v for k, v in candidates.items() if k not in REGRESSION_ONLY}
    if features:
        candidates.update(
            (name, combiner)
            for name, combiner in available_candidates(metric, random_state).items()
            if name in FEATURE_DEFAULTS
        )
    return candidates


# Candidate families beyond the static ones: each module's ``candidates(metric,
# random_state)`` names its combiners (imported on demand: some are heavier).
FAMILIES: tuple[str, ...] = ("dynamic", "routing", "fusion", "labelfree", "mixture")
# Candidates that read the features and join the defaults when X is given (last, so a time
# limit cuts them first). Stacking with LightGBM over the predictions and the features, on
# the pools of bench/adaptive.py, moved AutoCombiner's test log-loss on wine from .8535 to
# .8351 and on pendigits from .0914 to .0875 (California RMSE 45,277 -> 45,070), and left
# stroke, churn and adult5 within 0.1%; dynamic selection and routing never beat the
# static candidates there, so they stay available by name only.
FEATURE_DEFAULTS: tuple[str, ...] = ("stack_features_lgbm",)
# ... unless its design is large: rows x boosted outputs (classes, or 1) x columns (members'
# signals plus features) above this. Its nested CV took 14 s on wine (2e6), 48 s on
# pendigits (9e6) and 377 s on letter (1.2e8; from 7 s without it, for 4% lower log-loss).
MAX_FEATURE_DEFAULT_CELLS = 2e7


def available_candidates(metric="auto", random_state=0) -> dict[str, Combiner]:
    """Every combiner known by a name (``AutoCombiner(candidates=[...])``, ``--method``):
    the defaults and every family's (dynamic selection, routing, fusion, label-free)."""
    from importlib import import_module

    candidates = default_candidates(metric, random_state)
    for family in FAMILIES:
        module = import_module(f"ensemblex.combiners.{family}")
        candidates.update(module.candidates(metric=metric, random_state=random_state))
    return candidates


def outer_splits(y: np.ndarray, task: str, cv: int, random_state) -> list:
    """Outer folds over the out-of-fold rows (stratified for classification)."""
    if is_classification(task):
        counts = np.bincount(y)
        folds = min(cv, int(counts[counts > 0].min())) if cv > 1 else cv
        if folds >= 2:
            splitter = StratifiedKFold(folds, shuffle=True, random_state=random_state)
            return list(splitter.split(np.zeros(len(y)), y))
    return list(KFold(cv, shuffle=True, random_state=random_state).split(np.zeros(len(y))))


def nested_predictions(
    combiner: Combiner,
    P: Predictions,
    y,
    splits,
    sample_weight=None,
    warm_start=None,
    n_jobs: int | None = None,
    on_fold: Callable[[int], None] | None = None,
    X=None,
):
    """Predictions for every row from a clone of ``combiner`` fitted without that row's fold.

    Output: (n_samples, n_outputs). ``y`` holds labels as ``combiner.fit`` takes them;
    ``X`` (optional) the rows' features, split with them.
    ``warm_start``: a fitted combiner each fold's fit starts from (see
    :meth:`Combiner.warm_start_from`). ``n_jobs``: outer folds fitted in that many threads
    (the combiners' work is numpy and BLAS, which release the GIL; -1: one per core).
    ``on_fold(done)`` is called as folds finish.
    """
    finished = []

    def fit_fold(split):
        train, test = split
        sw = None if sample_weight is None else sample_weight[train]
        fold = clone(combiner)
        if warm_start is not None:
            fold.warm_start_from(warm_start)
        fitted = fold.fit(P.take(train), y[train], X=take_rows(X, train), sample_weight=sw)
        pred = fitted.predict(P.take(test), X=take_rows(X, test))
        finished.append(test)
        if on_fold is not None:
            on_fold(len(finished))
        return test, pred

    out = np.zeros((P.n_samples, P.n_outputs))
    workers = effective_n_jobs(n_jobs)
    if workers > 1 and len(splits) > 1:
        # one BLAS thread per fold thread: no oversubscription, and a combiner that limits
        # BLAS threads itself (Pooling) then saves and restores that same limit, so threads
        # entering and leaving it in any order cannot leave the process changed
        # (and warning filters are process-wide: a combiner's own catch_warnings is not
        # thread-safe, so the convergence warnings it silences are silenced here)
        with (
            threadpool_limits(1, user_api="blas"),
            warnings.catch_warnings(),
            ThreadPoolExecutor(min(workers, len(splits))) as pool,
        ):
            warnings.simplefilter("ignore", ConvergenceWarning)
            done = list(pool.map(fit_fold, splits))
    else:
        done = [fit_fold(split) for split in splits]
    for test, pred in done:
        out[test] = pred
    return out


@dataclass(frozen=True)
class NestedScore:
    """A candidate's nested cross-validated score, its loss (lower is better), seconds, and
    its held-out predictions ``(n_samples, n_outputs)``."""

    score: float
    loss: float
    seconds: float
    predictions: np.ndarray | None = None
    fitted: Combiner | None = None  # fitted on all rows, when that came first


def nested_scores(
    candidates: dict[str, Combiner],
    P: Predictions,
    y,
    metric,
    splits,
    sample_weight=None,
    progress: Callable[[str, int, int], None] | None = None,
    deadline: float | None = None,
    n_jobs: int | None = None,
    X=None,
) -> dict[str, NestedScore]:
    """Score each candidate on held-out outer folds, pooled over all rows.

    ``y`` holds labels as ``fit`` takes them; ``metric`` is a resolved :class:`Metric`;
    ``X`` (optional) the rows' features, for candidates that read them.
    ``progress(name, done, total)`` is called before each candidate (and as each of its
    outer folds finishes, with the count in the name); candidates after
    ``deadline`` (a ``time.perf_counter()`` value) are skipped, except the first; ``n_jobs``
    threads fit the outer folds.
    """
    codes = encode_labels(y, P.classes) if is_classification(P.task) else y
    results = {}
    for i, (name, candidate) in enumerate(candidates.items()):
        if deadline is not None and results and time.perf_counter() > deadline:
            break
        if progress is not None:
            progress(name, i, len(candidates))
        start = time.perf_counter()
        full = None
        if type(candidate).warm_start_from is not Combiner.warm_start_from:
            # the fit on all rows first: every outer fold starts from it, and it is the
            # refit if this candidate is chosen
            full = clone(candidate).fit(P, y, X=X, sample_weight=sample_weight)
        on_fold = None
        if progress is not None:

            def on_fold(done, name=name, i=i):
                progress(f"{name} ({done}/{len(splits)} folds)", i, len(candidates))

        pred = nested_predictions(
            candidate,
            P,
            y,
            splits,
            sample_weight,
            warm_start=full,
            n_jobs=n_jobs,
            on_fold=on_fold,
            X=X,
        )
        results[name] = NestedScore(
            score=metric.score(codes, pred, sample_weight),
            loss=metric.loss(codes, pred, sample_weight),
            seconds=time.perf_counter() - start,
            predictions=pred,
            fitted=full,
        )
    return results


def second_level(
    results: dict[str, NestedScore],
    P: Predictions,
    y,
    metric,
    splits,
    sample_weight=None,
    n_jobs: int | None = None,
) -> tuple[NestedScore, dict[str, float]]:
    """Bagged greedy selection over the candidates' held-out predictions (an ensemble of
    combiners).

    Its score comes from the same outer folds: the second-level weights are refit on the
    other folds' held-out predictions and scored on each fold's. Returns that score and the
    weights fitted on all rows (candidates with weight 0 left out).
    """
    start = time.perf_counter()
    names = list(results)
    Q = Predictions(
        np.stack([results[name].predictions for name in names], axis=1),
        names,
        P.task,
        classes=P.classes,
        source="candidates' held-out predictions",
    )
    # bagged (20 bootstrap resamples of the rows): on the stroke, SMS, churn and wine zoos
    # its test log-loss was lower than plain selection's on three and equal on the fourth
    level2 = GreedySelection(metric=metric, n_bags=20, random_state=0)
    scored = nested_scores({ENSEMBLE: level2}, Q, y, metric, splits, sample_weight, n_jobs=n_jobs)
    scored = scored[ENSEMBLE]
    weights = clone(level2).fit(Q, y, sample_weight=sample_weight).weights_
    chosen = {name: float(w) for name, w in zip(names, weights) if w > 0}
    seconds = time.perf_counter() - start + sum(results[name].seconds for name in chosen)
    return (
        NestedScore(scored.score, scored.loss, seconds, scored.predictions),
        chosen,
    )


def _design_cells(values: np.ndarray, X) -> float:
    """Rows x boosted outputs x columns of a meta-model over the predictions and features."""
    if X is None:
        return 0.0
    n, m, k = values.shape
    signals = m * (k if k > 2 else 1)
    return float(n) * (k if k > 2 else 1) * (signals + np.shape(X)[1])


class AutoCombiner(Combiner):
    """Combine the candidate combiners chosen by nested cross-validation, then refit.

    Each candidate is refit inside every outer fold of the out-of-fold rows and scored on
    the held-out fold; the pooled held-out score ranks them. The best single member is
    always a candidate, so a combiner whose nested score is worse is never chosen; ties go
    to the earlier candidate (the best single member first).

    The candidates' held-out predictions are themselves members of a second level: greedy
    selection over them, scored on the same outer folds (its weights refit on the other
    folds' held-out predictions), is the candidate ``"ensemble"``. By default
    (``select="ensemble"``) it is the choice unless the best single member scores better
    (then the first-level candidate with the best nested score is): mixing combiners hedges
    between rankings that one pooled score cannot tell apart. The candidates it weighs are
    refit on all rows and combined with its weights (:class:`CombinerEnsemble`); a
    second level that weighs one candidate is that candidate. On the ten zoos of
    bench/combiners.py this choice was better on test than the argmin of the nested scores
    (``select="best"``) on five, worse on three, equal on two (README).

    With ``select="first"`` the first of ``candidates`` is refit whatever the scores: every
    candidate, the best single member included, is still scored, so a caller that asked for
    one method gets it together with its nested score against the best member.

    Parameters
    ----------
    candidates : "default", list of str, or dict of str to Combiner
        Names from :func:`default_candidates`, or combiners keyed by a name; ``"default"``
        is :func:`default_candidates` for the task.
    metric : str or Metric, default "auto"
    cv : int, default 5
        Outer folds (fewer for a class with fewer rows, stratified for classes).
    random_state : int, default 0
    select : {"ensemble", "best", "first"}, default "ensemble"
        Refit the second level (unless the best single member beats it, see above),
        the candidate with the best nested score (the second level among them), or the
        first of ``candidates``.
    ensemble : bool, default True
        Fit the second level (not with ``select="first"``); without it ``"ensemble"``
        selects as ``"best"``.
    time_limit : float, optional
        Seconds for the nested cross-validation: candidates not started by then are skipped
        (the best single member always runs first).
    n_jobs : int, optional
        Threads fitting the outer folds (-1: one per core); the numbers agree to rounding
        (1e-12) with a serial fit.

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
    ensemble_weights_ : dict of str to float
        Second-level weight of each candidate it uses (empty without ``ensemble``).
    skipped_ : list of str
        Candidates skipped by ``time_limit``.
    skipped_for_cost_ : list of str
        Default candidates that read the features, left out because their design (rows x
        classes x columns) exceeds ``MAX_FEATURE_DEFAULT_CELLS``.

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
        "select": [StrOptions({"ensemble", "best", "first"})],
        "ensemble": ["boolean"],
        "time_limit": [Interval(Real, 0, None, closed="neither"), None],
        "n_jobs": [Integral, None],
    }

    def __init__(
        self,
        candidates="default",
        metric="auto",
        cv=5,
        random_state=0,
        select="ensemble",
        ensemble=True,
        time_limit=None,
        n_jobs=None,
    ):
        self.candidates = candidates
        self.metric = metric
        self.cv = cv
        self.random_state = random_state
        self.select = select
        self.ensemble = ensemble
        self.time_limit = time_limit
        self.n_jobs = n_jobs

    uses_features = "optional"  # passed to the candidates that read them

    def fit(self, P, y=None, X=None, sample_weight=None, progress=None):
        """Fit as :meth:`Combiner.fit`; ``progress(name, done, total)`` is called as each
        candidate's nested cross-validation starts and as each of its outer folds finishes
        (``name`` then carries the fold count). With ``X``, candidates that read the
        features are compared too; without, a candidate that needs them is an error."""
        self._progress = progress
        try:
            return super().fit(P, y, X=X, sample_weight=sample_weight)
        finally:
            self._progress = None

    def _candidate_dict(self, features: bool = True, cells: float = 0.0) -> dict[str, Combiner]:
        pool = available_candidates(self.metric, self.random_state)
        if isinstance(self.candidates, dict):
            chosen = dict(self.candidates)
        elif self.candidates == "default":
            chosen = default_candidates(self.metric, self.random_state, self.task_, features)
            if cells > MAX_FEATURE_DEFAULT_CELLS:
                self.skipped_for_cost_ = [n for n in FEATURE_DEFAULTS if n in chosen]
                chosen = {n: c for n, c in chosen.items() if n not in FEATURE_DEFAULTS}
        else:
            unknown = [c for c in self.candidates if c not in pool]
            if unknown:
                raise ValueError(f"candidates must be names among {list(pool)}, however: {unknown}")
            chosen = {name: pool[name] for name in self.candidates}
        if not chosen:
            raise ValueError(f"candidates must not be empty, however: {self.candidates!r}")
        if not features:
            needing = [n for n, c in chosen.items() if c.uses_features == "required"]
            if needing:
                raise ValueError(
                    f"candidates {needing} read the original features; pass X (--features in "
                    "the CLI) or leave them out"
                )
        return chosen

    def _fit(self, values, y, sample_weight, X=None):
        # One thread for the whole search: its products are small and many, and on 2 cores
        # threaded BLAS and OpenMP spent more time synchronising than computing (adult 18.0 s
        # against 7.9 s, letter 11.0 s against 7.9 s); n_jobs parallelises over folds instead.
        with threadpool_limits(1):  # BLAS and OpenMP (scikit-learn's losses)
            self._search(values, y, sample_weight, X)

    def _search(self, values, y, sample_weight, X):
        P = Predictions(values, self.members_, self.task_, classes=self.classes_)
        labels = self.classes_[y] if is_classification(self.task_) else y
        splits = outer_splits(y, self.task_, int(self.cv), self.random_state)
        self.n_splits_ = len(splits)  # fewer than cv when a class has fewer rows
        self.skipped_for_cost_ = []
        requested = self._candidate_dict(features=X is not None, cells=_design_cells(values, X))
        candidates = requested
        if BEST_SINGLE not in candidates:
            candidates = {BEST_SINGLE: BestSingle(metric=self.metric), **candidates}
        deadline = None if self.time_limit is None else time.perf_counter() + self.time_limit
        results = nested_scores(
            candidates,
            P,
            labels,
            self.metric_,
            splits,
            sample_weight,
            progress=getattr(self, "_progress", None),
            deadline=deadline,
            n_jobs=self.n_jobs,
            X=X,
        )
        self.skipped_ = [name for name in candidates if name not in results]
        self.ensemble_weights_ = {}
        if self.ensemble and self.select != "first" and len(results) > 1:
            if self._progress is not None:
                self._progress(ENSEMBLE, len(candidates), len(candidates))
            results[ENSEMBLE], self.ensemble_weights_ = second_level(
                results, P, labels, self.metric_, splits, sample_weight, n_jobs=self.n_jobs
            )
        self.scores_ = {name: r.score for name, r in results.items()}
        self.fit_seconds_ = {name: r.seconds for name, r in results.items()}
        if self.select == "first":
            self.method_ = next(iter(requested))
        elif self.select == "ensemble" and ENSEMBLE in results:
            self.method_ = self._prefer_ensemble(results)
        else:
            # min() keeps the first of equal losses, so the best single member wins ties.
            self.method_ = min(results, key=lambda name: results[name].loss)
        if self.method_ == ENSEMBLE and len(self.ensemble_weights_) == 1:
            self.method_ = next(iter(self.ensemble_weights_))  # one candidate: itself
        fitted = results[self.method_].fitted
        if fitted is None:
            fitted = self.candidate(self.method_)
            if self.method_ == ENSEMBLE:  # its candidates fitted on all rows in the search
                fitted.reuse({n: r.fitted for n, r in results.items() if r.fitted is not None})
            fitted = fitted.fit(P, labels, X=X, sample_weight=sample_weight)
        self.combiner_ = fitted

    def _prefer_ensemble(self, results) -> str:
        """The second level, unless the best single member scores better than it; then the
        first-level candidate with the best nested score."""
        if results[ENSEMBLE].loss < results[BEST_SINGLE].loss:
            return ENSEMBLE
        first = {name: r for name, r in results.items() if name != ENSEMBLE}
        # min() keeps the first of equal losses, so the best single member wins ties.
        return min(first, key=lambda name: first[name].loss)

    def candidate(self, name: str) -> Combiner:
        """An unfitted copy of the candidate ``name`` (a key of ``scores_``) as compared.

        ``"ensemble"`` is the second level: the candidates it weighs, with its weights.
        """
        candidates = self._candidate_dict()
        candidates.setdefault(BEST_SINGLE, BestSingle(metric=self.metric))
        if name == ENSEMBLE:
            weights = getattr(self, "ensemble_weights_", None)
            if not weights:
                raise ValueError("the second level was not fitted; fit with ensemble=True")
            return CombinerEnsemble(
                combiners={n: candidates[n] for n in weights}, weights=weights, metric=self.metric
            )
        if name not in candidates:
            raise ValueError(f"unknown candidate {name!r}; candidates are {list(candidates)}")
        return clone(candidates[name])

    def _predict(self, values, X=None):
        return self.combiner_._combine(values, X)

    def used_members(self) -> np.ndarray:
        return self.combiner_.used_members()

    @property
    def weights_(self) -> np.ndarray:
        """Member weights of the chosen combiner, where it has them."""
        return self.combiner_.weights_
