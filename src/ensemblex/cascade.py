"""Early-exit cascades: run members cheapest first, stop as soon as the answer is confident.

Stage s predicts with the (weighted) mean of the s cheapest members. A sample exits at the
first stage whose prediction is confident enough and pays the cost of the members run so far;
the last stage is the full ensemble. Two exit rules:

- ``"confidence"``: exit when the top-label probability is at least the threshold;
- ``"window"`` (binary): exit when P(positive) lies outside a window of half-width w around
  the decision boundary, i.e. when later members could not plausibly flip the decision. The
  boundary is the decision threshold; for a coverage-at-risk target it is the full ensemble's
  pair of acceptance thresholds instead (an accepted sample lies beyond them, so its label is
  settled), and clear abstentions leave early too.

One threshold (or window) is shared by all stages and chosen on out-of-fold predictions as the
cheapest that meets the target: accuracy within ``epsilon`` of the full ensemble's, or the full
ensemble's coverage at a given selective risk.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ensemblex.metrics.selective import coverage_at_risk, risk_coverage_curve
from ensemblex.predictions import Predictions, as_predictions
from ensemblex.tasks import encode_labels

# Bytes of (thresholds x samples x stages) booleans evaluated at once in the threshold sweep.
_CHUNK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class CascadeOutput:
    """What :meth:`Cascade.predict` returns.

    Attributes
    ----------
    proba : ndarray (n_samples, n_classes)
        The prediction of each sample's exit stage.
    exit_stage : ndarray (n_samples,)
        0-based stage at which each sample exited.
    cost : ndarray (n_samples,)
        Cost paid per sample: the summed cost of the members run.
    """

    proba: np.ndarray
    exit_stage: np.ndarray
    cost: np.ndarray


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    cost: float
    relative_cost: float
    accuracy: float
    coverage_at_risk: float | None = None


class Cascade(BaseEstimator):
    """An early-exit cascade over members ordered by cost.

    Parameters
    ----------
    rule : {"confidence", "window"}
    target : {"accuracy", "coverage_at_risk"}
        What the chosen threshold must preserve from the full ensemble.
    epsilon : float, default 0.001
        Allowed loss: accuracy (absolute, 0.001 = 0.1 point) or coverage.
    risk : float, default 0.05
        The selective risk for ``target="coverage_at_risk"``.
    weights : array-like (n_members,), optional
        Member weights of the full ensemble (e.g. a combiner's ``weights_``); members with
        zero weight are never run. Default: equal.
    costs : array-like (n_members,), optional
        Cost per sample of each member (seconds or FLOPs); default ``P.costs``.
    decision_threshold : float, default 0.5
        Binary decision threshold the window is centred on.
    min_accuracy, min_coverage : float, optional
        Absolute targets instead of "within epsilon of the full ensemble".
    n_thresholds : int, default 400
        Candidate thresholds swept (quantiles of the stages' confidences).

    Attributes
    ----------
    order_ : list of str
        Members run, cheapest first.
    run_indices_ : ndarray of int
        Their indices in ``members_``.
    run_weights_ : ndarray
        Their weights.
    members_ : tuple of str
    classes_ : ndarray
    boundaries_ : list of float
        Where the binary decision changes (the ``"window"`` rule centres on these).
    stage_costs_ : ndarray
        Cumulative cost per sample of exiting at each stage.
    threshold_ : float
        Confidence threshold, or window half-width for ``rule="window"``.
    front_ : list of OperatingPoint
        Accuracy-cost Pareto front over the swept thresholds (on the fitting rows).
    chosen_ : OperatingPoint
    full_accuracy_ : float
    full_coverage_at_risk_ : float
    """

    _parameter_constraints: ClassVar[dict] = {
        "rule": [StrOptions({"confidence", "window"})],
        "target": [StrOptions({"accuracy", "coverage_at_risk"})],
        "epsilon": [Interval(Real, 0, None, closed="left")],
        "risk": [Interval(Real, 0, 1, closed="both")],
        "weights": ["array-like", None],
        "costs": ["array-like", None],
        "decision_threshold": [Interval(Real, 0, 1, closed="neither")],
        "n_thresholds": [Interval(Integral, 2, None, closed="left")],
        "min_accuracy": [Interval(Real, 0, 1, closed="both"), None],
        "min_coverage": [Interval(Real, 0, 1, closed="both"), None],
    }

    def __init__(
        self,
        rule="confidence",
        target="accuracy",
        epsilon=0.001,
        risk=0.05,
        weights=None,
        costs=None,
        decision_threshold=0.5,
        n_thresholds=400,
        min_accuracy=None,
        min_coverage=None,
    ):
        self.rule = rule
        self.target = target
        self.epsilon = epsilon
        self.risk = risk
        self.weights = weights
        self.costs = costs
        self.decision_threshold = decision_threshold
        self.n_thresholds = n_thresholds
        self.min_accuracy = min_accuracy
        self.min_coverage = min_coverage

    # ------------------------------------------------------------ stages
    def stage_probabilities(self, P) -> np.ndarray:
        """Every stage's prediction for every sample, the last being the full ensemble.

        Parameters
        ----------
        P : Predictions or ndarray of shape (n_samples, n_members, n_classes)
            The members fitted on (reordered by name when ``P`` names them).

        Returns
        -------
        ndarray of shape (n_samples, n_stages, n_classes)
            Stage s is the weighted mean of the s + 1 cheapest members run.
        """
        check_is_fitted(self, "threshold_", msg="%(name)s is not fitted yet; call fit first")
        return self._stages(self._aligned(P).values)

    def _aligned(self, P) -> Predictions:
        P = as_predictions(P)
        if set(P.members) == set(self.members_):
            P = P.select(list(self.members_))
        return P

    def _stages(self, values: np.ndarray) -> np.ndarray:
        """Cumulative weighted means over the cost order: (n, S, k)."""
        V = values[:, self.run_indices_] * self.run_weights_[None, :, None]
        return np.cumsum(V, axis=1) / np.cumsum(self.run_weights_)[None, :, None]

    def _margin(self, stages: np.ndarray) -> np.ndarray:
        """How far each stage is from changing its mind: (n, S); exit when >= threshold."""
        if self.rule == "window":
            p = stages[:, :, 1][..., None]
            return np.abs(p - np.asarray(self.boundaries_)).min(axis=2)
        return stages.max(axis=2)

    def _exit_stage(self, margin: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
        """First stage whose margin reaches each threshold (last stage if none): (T, n)."""
        n, S = margin.shape
        out = np.empty((len(thresholds), n), dtype=np.intp)
        step = max(1, _CHUNK_BYTES // max(n * S, 1))
        for start in range(0, len(thresholds), step):
            t = thresholds[start : start + step, None, None]
            confident = margin[None] >= t
            confident[:, :, -1] = True  # the full ensemble always answers
            out[start : start + step] = confident.argmax(axis=2)
        return out

    # ------------------------------------------------------------ fit
    def fit(self, P, y) -> Cascade:
        """Choose the threshold on out-of-fold predictions ``P`` and labels ``y``.

        Parameters
        ----------
        P : Predictions or ndarray of shape (n_samples, n_members, n_classes)
        y : array-like of shape (n_samples,)
            Class labels (from ``P.classes``).

        Returns
        -------
        self
        """
        self._validate_params()
        P = as_predictions(P)
        if P.task == "regression":
            raise ValueError("a cascade needs class probabilities; P is a regression task")
        if self.rule == "window" and P.task != "binary":
            raise ValueError("rule='window' is for binary decisions; use rule='confidence'")
        self._setup(P)
        y = encode_labels(np.asarray(y), P.classes)
        stages = self._stages(P.values)
        full = stages[:, -1]
        self.boundaries_ = self._boundaries(full, y)
        margin = self._margin(stages)
        self.full_accuracy_ = float(np.mean(full.argmax(axis=1) == y))
        full_coverage = coverage_at_risk(full, y, self.risk)
        early = margin[:, :-1]  # none with one member: the full ensemble is the only stage
        levels = np.linspace(0, 1, self.n_thresholds)
        thresholds = np.unique(np.quantile(early, levels)) if early.size else np.empty(0)
        thresholds = np.r_[thresholds, np.inf]  # inf: everything runs the full ensemble
        exits = self._exit_stage(margin, thresholds)  # (T, n)
        rows = np.arange(len(y))
        points = []
        for t, exit_stage in zip(thresholds, exits):
            chosen = stages[rows, exit_stage]
            cost = float(self.stage_costs_[exit_stage].mean())
            cov = coverage_at_risk(chosen, y, self.risk) if self.target != "accuracy" else None
            points.append(
                OperatingPoint(
                    float(t),
                    cost,
                    cost / self.stage_costs_[-1],
                    float(np.mean(chosen.argmax(axis=1) == y)),
                    cov,
                )
            )
        self.front_ = _pareto(points)
        if self.target == "accuracy":
            goal = self.min_accuracy
            goal = self.full_accuracy_ - self.epsilon if goal is None else goal
            meets = np.array([p.accuracy >= goal for p in points])
        else:
            goal = full_coverage - self.epsilon if self.min_coverage is None else self.min_coverage
            meets = np.array([p.coverage_at_risk >= goal for p in points])
        # The lowest threshold from which every stricter one meets the target: a threshold
        # that passes only by a lucky dip on the fitting rows does not hold on new rows.
        failing = np.flatnonzero(~meets)
        ok = points[failing.max() + 1 :] if len(failing) else points
        if not ok:
            raise ValueError(
                f"no threshold reaches the target {self.target} >= {goal:.4f}; the full "
                f"ensemble gets accuracy {self.full_accuracy_:.4f} and coverage "
                f"{full_coverage:.4f} at risk {self.risk}"
            )
        self.chosen_ = min(ok, key=lambda p: (p.cost, -p.threshold))
        self.threshold_ = self.chosen_.threshold
        self.full_coverage_at_risk_ = full_coverage
        return self

    def _boundaries(self, full: np.ndarray, y: np.ndarray) -> list[float]:
        """Where a binary decision changes: the decision threshold or, for a coverage-at-risk
        target, the full ensemble's acceptance thresholds on P(positive)."""
        boundaries = [self.decision_threshold]
        if self.rule == "window" and self.target == "coverage_at_risk":
            curve = risk_coverage_curve(full, y)
            ok = np.flatnonzero(curve.risk <= self.risk)
            if len(ok):
                accept = float(curve.threshold[ok.max()])  # top-label confidence to accept
                boundaries = [1.0 - accept, accept]
        return boundaries

    def _setup(self, P: Predictions) -> None:
        costs = self.costs if self.costs is not None else P.costs
        if costs is None:
            raise ValueError("costs are needed: pass costs= or Predictions with costs")
        costs = np.asarray(costs, dtype=np.float64)
        if costs.shape != (P.n_members,) or np.any(costs < 0):
            raise ValueError(f"costs must be {P.n_members} non-negative numbers")
        w = np.ones(P.n_members) if self.weights is None else np.asarray(self.weights, float)
        if w.shape != (P.n_members,) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"weights must be {P.n_members} non-negative numbers, not all zero")
        run = [j for j in np.argsort(costs, kind="stable") if w[j] > 0]
        self.run_indices_ = np.asarray(run)
        self.run_weights_ = w[run]
        self.order_ = [P.members[j] for j in run]
        self.members_ = P.members
        self.classes_ = P.classes
        self.stage_costs_ = np.cumsum(costs[run])

    # ------------------------------------------------------------ predict
    def predict(self, P) -> CascadeOutput:
        """Each sample's prediction at its exit stage, the stage, and the cost paid."""
        check_is_fitted(self, "threshold_", msg="%(name)s is not fitted yet; call fit first")
        P = self._aligned(P)
        stages = self._stages(P.values)
        exit_stage = self._exit_stage(self._margin(stages), np.array([self.threshold_]))[0]
        proba = stages[np.arange(P.n_samples), exit_stage]
        return CascadeOutput(proba, exit_stage, self.stage_costs_[exit_stage])


def _pareto(points: list[OperatingPoint]) -> list[OperatingPoint]:
    """Points no other point beats on both cost (lower) and accuracy (higher), by cost."""
    front, best = [], -np.inf
    for p in sorted(points, key=lambda p: (p.cost, -p.accuracy)):
        if p.accuracy > best:
            front.append(p)
            best = p.accuracy
    return front
