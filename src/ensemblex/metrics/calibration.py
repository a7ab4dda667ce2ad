"""Calibration: expected calibration error, reliability-diagram data, temperature scaling.

All functions take class probabilities ``proba`` (n_samples, n_classes) and integer labels
``y`` (n_samples,); confidence is the top-label probability.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

_EPS = np.finfo(np.float64).eps


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin data of a reliability diagram (empty bins have count 0).

    Attributes
    ----------
    edges : ndarray
        Bin edges (equal-width bins add a last bin [1, 1]).
    confidence, accuracy : ndarray
        Mean confidence and accuracy of the samples in each bin.
    count : ndarray
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray


def _top_label(proba, y):
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2:
        raise ValueError(f"proba must be (n_samples, n_classes), however: shape={proba.shape}")
    return proba.max(axis=1), (proba.argmax(axis=1) == np.asarray(y)).astype(np.float64)


def reliability_bins(proba, y, n_bins: int = 15, strategy: str = "uniform") -> ReliabilityBins:
    """Bin samples by confidence: ``"uniform"`` (equal-width) or ``"quantile"`` (equal-count).

    Equal-width bins are half-open ``[lo, hi)`` as in torchmetrics, with one more bin for
    confidences of exactly 1.
    """
    confidence, correct = _top_label(proba, y)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.quantile(confidence, np.linspace(0.0, 1.0, n_bins + 1))
    else:
        raise ValueError(f"strategy must be 'uniform' or 'quantile', however: {strategy!r}")
    which = np.searchsorted(edges, confidence, side="right") - 1
    if strategy == "uniform":
        # As torchmetrics (and so torch-uncertainty): a confidence of exactly 1 gets a bin of
        # its own after the last, so that the ECE agrees with theirs.
        edges = np.r_[edges, 1.0]
        size = n_bins + 1
    else:
        which = np.clip(which, 0, n_bins - 1)
        size = n_bins
    count = np.bincount(which, minlength=size).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.nan_to_num(np.bincount(which, confidence, size) / count)
        acc = np.nan_to_num(np.bincount(which, correct, size) / count)
    return ReliabilityBins(edges, conf, acc, count)


def expected_calibration_error(proba, y, n_bins: int = 15, strategy: str = "uniform") -> float:
    """ECE: the count-weighted mean |accuracy - confidence| over confidence bins.

    ``strategy="uniform"`` gives the usual equal-width ECE (torchmetrics' and
    torch-uncertainty's), ``"quantile"`` the adaptive ECE with equal-count bins.

    Examples
    --------
    >>> expected_calibration_error([[0.9, 0.1], [0.6, 0.4]], [0, 1], n_bins=10)
    0.35
    """
    bins = reliability_bins(proba, y, n_bins, strategy)
    weights = bins.count / bins.count.sum()
    return float(np.sum(np.abs(bins.accuracy - bins.confidence) * weights))


class TemperatureScaling(BaseEstimator):
    """One temperature T dividing log-probabilities, fitted by minimising the log-loss.

    Fit it on out-of-fold probabilities of the ensemble, apply it to new ones.

    Parameters
    ----------
    bounds : tuple of (float, float), default (0.05, 20.0)
        Smallest and largest temperature searched; 0 < low < high.

    Attributes
    ----------
    temperature_ : float

    Examples
    --------
    >>> import numpy as np
    >>> proba = np.array([[0.99, 0.01], [0.95, 0.05], [0.1, 0.9], [0.9, 0.1]])
    >>> scaler = TemperatureScaling().fit(proba, [0, 0, 1, 1])
    >>> round(scaler.temperature_, 2)  # a confident mistake: soften
    2.11
    >>> scaler.transform(proba).round(3)[0].tolist()
    [0.898, 0.102]
    """

    _parameter_constraints: ClassVar[dict] = {"bounds": [tuple, list]}

    def __init__(self, bounds: tuple[float, float] = (0.05, 20.0)):
        self.bounds = bounds

    def fit(self, proba, y) -> TemperatureScaling:
        """Fit the temperature on probabilities ``proba`` (n, k) and integer labels ``y`` (n,)."""
        self._validate_params()
        lo, hi = (float(b) for b in self.bounds) if len(self.bounds) == 2 else (0.0, 0.0)
        if not 0 < lo < hi < np.inf:
            raise ValueError(
                f"bounds must be two numbers with 0 < low < high, however: bounds={self.bounds!r}"
            )
        logp = np.log(np.clip(np.asarray(proba, dtype=np.float64), _EPS, 1.0))
        y = np.asarray(y)
        rows = np.arange(len(y))

        def nll(log_t):
            return -log_softmax(logp / np.exp(log_t), axis=1)[rows, y].mean()

        lo, hi = np.log(lo), np.log(hi)
        result = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-8})
        self.temperature_ = float(np.exp(result.x))
        return self

    def transform(self, proba) -> np.ndarray:
        """Rescaled probabilities (rows still sum to one)."""
        check_is_fitted(self, "temperature_", msg="%(name)s is not fitted yet; call fit first")
        logp = np.log(np.clip(np.asarray(proba, dtype=np.float64), _EPS, 1.0))
        return np.exp(log_softmax(logp / self.temperature_, axis=1))
