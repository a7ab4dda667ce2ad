"""Every uncertainty metric for each member and for the ensemble: what ``evaluate`` prints.

One entry point, :func:`evaluate_predictions`, on a :class:`~ensemblex.predictions.Predictions`
and its target. The ensemble is the members' plain mean (of probabilities, of values, of
Gaussians as an equal-weight mixture, or of quantiles level by level).

Returns ``{"task", "members": {name: {metric: value}}, "ensemble": {summary: value}}``
where ``members`` also holds the row ``ENSEMBLE``; every value is JSON-able.
"""

from __future__ import annotations

import numpy as np

from ensemblex.metrics import calibration, diversity, ood, probabilistic, selective
from ensemblex.metrics.scores import get_metric
from ensemblex.predictions import Predictions
from ensemblex.tasks import encode_labels

ENSEMBLE = "ensemble (mean)"


def evaluate_predictions(P: Predictions, y, P_ood: Predictions | None = None) -> dict:
    """Score every member of ``P`` and their mean against ``y``.

    Parameters
    ----------
    P : Predictions
        Classification probabilities, or regression values, Gaussians (``mean``, ``var``)
        or quantiles.
    y : array-like of shape (n_samples,)
        Labels (classification) or numbers (regression).
    P_ood : Predictions, optional
        The same members on out-of-distribution rows (classification only): adds OOD
        detection scores.

    Returns
    -------
    dict
        ``{"task", "members", "ensemble"}`` as the module describes.
    """
    if not isinstance(P, Predictions):
        raise TypeError(f"P must be Predictions, however: type(P)={type(P).__name__}")
    y = np.asarray(y)
    if y.shape != (P.n_samples,):
        raise ValueError(f"y must have shape ({P.n_samples},), however: y.shape={y.shape}")
    if P.task != "regression":
        return {"task": P.task, **evaluate_classification(P, y, P_ood)}
    if P_ood is not None:
        raise ValueError(f"P_ood is for classification predictions, however: task={P.task!r}")
    y = y.astype(np.float64)
    if P.output_kind == "quantiles":
        return {"task": P.task, **evaluate_quantiles(P, y)}
    variances = None
    if P.output_kind == "gaussian":
        variances = P.values[:, :, 1]
        if np.any(variances == 0):
            row, member = np.argwhere(variances == 0)[0]
            raise ValueError(
                f"{P.source}: member {P.members[member]!r} has variance 0 at row {row}; "
                "the likelihood needs var > 0"
            )
    return {
        "task": P.task,
        **evaluate_regression(P.values[:, :, 0], y, list(P.members), variances),
    }


# ---------------------------------------------------------------- classification
def classification_metrics(proba: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Scores, calibration and selective prediction of one prediction.

    Input: ``proba`` (n_samples, n_classes), ``y`` class codes (n_samples,).
    """
    out = {
        name: get_metric(name, "multiclass").score(y, proba)
        for name in ("log_loss", "accuracy", "brier")
    }
    out["ece"] = calibration.expected_calibration_error(proba, y)
    out["adaptive_ece"] = calibration.expected_calibration_error(proba, y, strategy="quantile")
    out["aurc"] = selective.aurc(proba, y)
    out["coverage_at_5pct_risk"] = selective.coverage_at_risk(proba, y, 0.05)
    out["risk_at_80pct_coverage"] = selective.risk_at_coverage(proba, y, 0.8)
    return out


def evaluate_classification(P: Predictions, y, P_ood: Predictions | None = None) -> dict:
    """Per-member and mean scores, diversity and (with ``P_ood``) OOD detection."""
    codes = encode_labels(y, P.classes)
    rows = {m: classification_metrics(P.values[:, j], codes) for j, m in enumerate(P.members)}
    rows[ENSEMBLE] = classification_metrics(P.values.mean(axis=1), codes)
    ambiguity = diversity.ambiguity_decomposition(P.values, codes, "cross_entropy")
    disagreement = diversity.pairwise_disagreement(P.values)
    m = P.n_members
    summary = {
        "mean_pairwise_disagreement": float(disagreement.sum() / max(m * (m - 1), 1)),
        "ambiguity_cross_entropy": vars(ambiguity),
    }
    if P_ood is not None:
        detections = {}
        for name, score in ood.OOD_SCORES.items():
            detections[name] = vars(ood.detection_metrics(score(P.values), score(P_ood.values)))
        summary["ood"] = detections
        for j, member in enumerate(P.members):
            single = ood.detection_metrics(
                ood.max_probability_score(P.values[:, j : j + 1]),
                ood.max_probability_score(P_ood.values[:, j : j + 1]),
            )
            rows[member]["ood_auroc_max_probability"] = single.auroc
        rows[ENSEMBLE]["ood_auroc_max_probability"] = detections["max_probability"]["auroc"]
    return {"members": rows, "ensemble": summary}


# ---------------------------------------------------------------- regression
def _point_scores(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {
        name: get_metric(name, "regression").score(y, pred[:, None])
        for name in ("rmse", "mae", "r2")
    }


def _point_summary(means: np.ndarray, y: np.ndarray) -> dict:
    """Diversity and spread of the members' point predictions (none for one member)."""
    if means.shape[1] < 2:
        return {}
    return {
        "ambiguity_squared_error": vars(diversity.ambiguity_decomposition(means, y)),
        "mean_error_correlation": float(_off_diagonal_mean(diversity.error_correlation(means, y))),
        "spread_skill_ratio": probabilistic.spread_skill_ratio(means, y),
        "rank_histogram": probabilistic.rank_histogram(means, y).tolist(),
    }


def evaluate_regression(
    means: np.ndarray, y: np.ndarray, names: list[str], variances: np.ndarray | None = None
) -> dict:
    """Point scores per member and for the mean; with ``variances`` (members that predict a
    Gaussian), each member's and the equal-weight mixture's NLL, CRPS and spread-skill ratio,
    and the mixture's 90% interval and PIT histogram (which replace the spread-skill ratio and
    rank histogram of the members' means: each member's own variance counts).

    Input: ``means`` and ``variances`` (n_samples, n_members), ``y`` (n_samples,).
    """

    def scores(pred, var=None):
        out = _point_scores(pred, y)
        if var is not None:
            out["nll"] = probabilistic.mixture_nll(pred[:, None], var[:, None], y)
            out["crps"] = probabilistic.mixture_crps(pred[:, None], var[:, None], y)
            out["spread_skill_ratio"] = probabilistic.mixture_spread_skill_ratio(
                pred[:, None], var[:, None], y
            )
        return out

    rows = {
        m: scores(means[:, j], None if variances is None else variances[:, j])
        for j, m in enumerate(names)
    }
    rows[ENSEMBLE] = scores(means.mean(axis=1))
    summary = _point_summary(means, y)
    if variances is not None:
        rows[ENSEMBLE]["nll"] = probabilistic.mixture_nll(means, variances, y)
        rows[ENSEMBLE]["crps"] = probabilistic.mixture_crps(means, variances, y)
        rows[ENSEMBLE]["spread_skill_ratio"] = probabilistic.mixture_spread_skill_ratio(
            means, variances, y
        )
        interval = probabilistic.interval_coverage(means, variances, y, 0.9)
        summary["interval_90"] = vars(interval)
        summary.pop("rank_histogram", None)
        summary["spread_skill_ratio"] = rows[ENSEMBLE]["spread_skill_ratio"]
        summary["pit_histogram"] = probabilistic.pit_histogram(means, variances, y).tolist()
    return {"members": rows, "ensemble": summary}


def pinball_loss(quantiles: np.ndarray, y: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Mean pinball loss of each level, shape (n_levels,).

    Input: ``quantiles`` (n_samples, n_levels), ``y`` (n_samples,), ``levels`` (n_levels,).

    Examples
    --------
    >>> pinball_loss(np.array([[1.0, 3.0]]), np.array([2.0]), np.array([0.25, 0.75])).tolist()
    [0.25, 0.25]
    """
    diff = y[:, None] - quantiles
    return np.mean(np.maximum(levels * diff, (levels - 1) * diff), axis=0)


def quantile_metrics(quantiles: np.ndarray, y: np.ndarray, levels: np.ndarray) -> dict:
    """Mean pinball loss, the outermost levels' interval coverage and width, and the point
    scores of the median when 0.5 is among the levels."""
    out = {"pinball": float(pinball_loss(quantiles, y, levels).mean())}
    if len(levels) > 1:
        lower, upper = quantiles[:, 0], quantiles[:, -1]
        out["interval_coverage"] = float(np.mean((y >= lower) & (y <= upper)))
        out["interval_width"] = float(np.mean(upper - lower))
    median = np.flatnonzero(np.isclose(levels, 0.5))
    if median.size:
        out.update(_point_scores(quantiles[:, median[0]], y))
    return out


def evaluate_quantiles(P: Predictions, y: np.ndarray) -> dict:
    """Quantile members: each member's and the level-wise mean's pinball loss and interval.

    The ensemble is quantile averaging (the mean of the members' quantiles at each level).
    """
    levels = P.quantiles
    rows = {m: quantile_metrics(P.values[:, j], y, levels) for j, m in enumerate(P.members)}
    rows[ENSEMBLE] = quantile_metrics(P.values.mean(axis=1), y, levels)
    summary: dict = {"quantile_levels": levels.tolist()}
    if len(levels) > 1:
        summary["nominal_interval_coverage"] = float(levels[-1] - levels[0])
    median = np.flatnonzero(np.isclose(levels, 0.5))
    if median.size:
        summary.update(_point_summary(P.values[:, :, median[0]], y))
    return {"members": rows, "ensemble": summary}


def _off_diagonal_mean(matrix: np.ndarray) -> float:
    m = len(matrix)
    return (matrix.sum() - np.trace(matrix)) / max(m * (m - 1), 1)
