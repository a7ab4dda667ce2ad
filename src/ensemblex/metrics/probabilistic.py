"""Probabilistic regression: members that predict a mean and a variance, as a Gaussian mixture.

Inputs: ``means`` and ``variances`` of shape (n_samples, n_members), optional mixture
``weights`` (n_members,) summing to one (default equal).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp, ndtr

_LOG_2PI = np.log(2 * np.pi)


def _check(means, variances, weights):
    means = np.asarray(means, dtype=np.float64)
    variances = np.asarray(variances, dtype=np.float64)
    if means.ndim != 2 or means.shape != variances.shape:
        raise ValueError(
            "means and variances must both be (n_samples, n_members), however: "
            f"means.shape={means.shape}, variances.shape={variances.shape}"
        )
    if np.any(variances <= 0) or not np.all(np.isfinite(variances)):
        raise ValueError("variances must be finite and positive")
    m = means.shape[1]
    w = np.full(m, 1.0 / m) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (m,) or np.any(w < 0) or abs(w.sum() - 1) > 1e-9:
        raise ValueError(f"weights must be {m} non-negative numbers summing to 1")
    return means, variances, w


def mixture_moments(means, variances, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of the mixture per sample (law of total variance; clipped at 0
    against rounding when one member has all the weight)."""
    means, variances, w = _check(means, variances, weights)
    mean = means @ w
    return mean, np.maximum((variances + means**2) @ w - mean**2, 0.0)


def mixture_nll(means, variances, y, weights=None) -> float:
    """Mean negative log-likelihood of ``y`` under the Gaussian mixture."""
    means, variances, w = _check(means, variances, weights)
    y = np.asarray(y, dtype=np.float64)[:, None]
    log_pdf = -0.5 * (_LOG_2PI + np.log(variances) + (y - means) ** 2 / variances)
    return float(-logsumexp(log_pdf, b=w[None, :], axis=1).mean())


def mixture_crps(means, variances, y, weights=None) -> float:
    """Mean CRPS of the Gaussian mixture, computed by ``scoringrules.crps_mixnorm``."""
    import scoringrules as sr

    means, variances, w = _check(means, variances, weights)
    y = np.asarray(y, dtype=np.float64)
    weight_rows = np.broadcast_to(w, means.shape)
    return float(np.mean(sr.crps_mixnorm(y, means, np.sqrt(variances), weight_rows)))


def mixture_quantile(means, variances, q: float, weights=None, iterations: int = 80):
    """The q-quantile of each sample's mixture, by bisection on all samples at once."""
    means, variances, w = _check(means, variances, weights)
    sd = np.sqrt(variances)
    lo = (means - 12 * sd).min(axis=1)
    hi = (means + 12 * sd).max(axis=1)
    for _ in range(iterations):  # one vectorised step per halving, never per sample
        mid = 0.5 * (lo + hi)
        below = ndtr((mid[:, None] - means) / sd) @ w < q
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class IntervalScore:
    coverage: float
    mean_width: float


def interval_coverage(means, variances, y, level: float = 0.9, weights=None) -> IntervalScore:
    """Share of ``y`` inside the central ``level`` interval of the mixture, and its width."""
    y = np.asarray(y, dtype=np.float64)
    lower = mixture_quantile(means, variances, (1 - level) / 2, weights)
    upper = mixture_quantile(means, variances, (1 + level) / 2, weights)
    return IntervalScore(float(np.mean((y >= lower) & (y <= upper))), float(np.mean(upper - lower)))


def spread_skill_ratio(means, y) -> float:
    """Ensemble spread over the error of the ensemble mean: sqrt(mean member variance) /
    RMSE of the mean, with the (m + 1) / m finite-ensemble correction (1 when reliable)."""
    means = np.asarray(means, dtype=np.float64)
    m = means.shape[1]
    spread = np.sqrt(means.var(axis=1, ddof=1).mean())
    skill = np.sqrt(np.mean((means.mean(axis=1) - np.asarray(y, dtype=np.float64)) ** 2))
    return float(np.sqrt((m + 1) / m) * spread / skill)


def rank_histogram(means, y) -> np.ndarray:
    """Counts of the rank of ``y`` among the members' means: m + 1 bins (flat when reliable)."""
    means = np.asarray(means, dtype=np.float64)
    ranks = np.sum(means < np.asarray(y, dtype=np.float64)[:, None], axis=1)
    return np.bincount(ranks, minlength=means.shape[1] + 1)


# ---------------------------------------------------------------- Gaussian mixtures
def mixture_spread_skill_ratio(means, variances, y, weights=None) -> float:
    """Spread of the mixture over the error of its mean: ``sqrt(mean mixture variance) /
    RMSE(mixture mean)``; 1 when the predicted variance matches the squared error on average.

    Unlike :func:`spread_skill_ratio` (a finite ensemble of point predictions), each member's
    own variance counts: the spread is the mixture's whole standard deviation.

    Examples
    --------
    >>> means = np.array([[0.0], [0.0]]); variances = np.array([[4.0], [4.0]])
    >>> mixture_spread_skill_ratio(means, variances, np.array([2.0, -2.0]))
    1.0
    """
    mean, var = mixture_moments(means, variances, weights)
    skill = np.sqrt(np.mean((mean - np.asarray(y, dtype=np.float64)) ** 2))
    return float(np.sqrt(var.mean()) / skill)


def mixture_pit(means, variances, y, weights=None) -> np.ndarray:
    """Probability integral transform: the mixture's CDF at each ``y``, shape (n_samples,);
    uniform on [0, 1] when the forecasts are calibrated."""
    means, variances, w = _check(means, variances, weights)
    z = (np.asarray(y, dtype=np.float64)[:, None] - means) / np.sqrt(variances)
    return ndtr(z) @ w


def pit_histogram(means, variances, y, bins: int = 10, weights=None) -> np.ndarray:
    """Counts of :func:`mixture_pit` in ``bins`` equal bins of [0, 1]: the rank histogram of a
    continuous forecast (flat when calibrated, U-shaped when under-dispersed)."""
    if int(bins) < 1:
        raise ValueError(f"bins must be >= 1, however: bins={bins}")
    pit = mixture_pit(means, variances, y, weights)
    edges = np.minimum((pit * int(bins)).astype(np.int64), int(bins) - 1)
    return np.bincount(edges, minlength=int(bins))
