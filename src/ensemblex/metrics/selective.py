"""Selective prediction: accept the most confident samples, abstain on the rest.

Risk is the error rate among accepted samples, coverage the share accepted. Confidence is
the max probability by default or any score where higher means more confident.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RiskCoverage:
    """The risk-coverage curve: accepting the k most confident samples, k = 1..n.

    Attributes
    ----------
    coverage : ndarray (n,)
        k / n.
    risk : ndarray (n,)
        Error rate among the k accepted samples.
    threshold : ndarray (n,)
        Confidence of the k-th sample: accept samples with confidence >= threshold.
    """

    coverage: np.ndarray
    risk: np.ndarray
    threshold: np.ndarray


def _confidence_and_errors(proba, y, confidence):
    proba = np.asarray(proba, dtype=np.float64)
    errors = (proba.argmax(axis=1) != np.asarray(y)).astype(np.float64)
    conf = proba.max(axis=1) if confidence is None else np.asarray(confidence, dtype=np.float64)
    if conf.shape != errors.shape:
        raise ValueError(f"confidence must have shape {errors.shape}, however: shape={conf.shape}")
    return conf, errors


def risk_coverage_curve(proba, y, confidence=None) -> RiskCoverage:
    """Risk at every coverage, most confident first (ties keep the input order)."""
    conf, errors = _confidence_and_errors(proba, y, confidence)
    order = np.argsort(-conf, kind="stable")
    k = np.arange(1, len(errors) + 1)
    return RiskCoverage(k / len(errors), np.cumsum(errors[order]) / k, conf[order])


def aurc(proba, y, confidence=None) -> float:
    """Area under the risk-coverage curve: the mean selective risk over k = 1..n.

    Examples
    --------
    >>> aurc([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]], [0, 0, 0])
    0.1111111111111111
    """
    return float(risk_coverage_curve(proba, y, confidence).risk.mean())


def coverage_at_risk(proba, y, risk: float = 0.05, confidence=None) -> float:
    """The largest coverage whose selective risk is at most ``risk`` (0 if none)."""
    curve = risk_coverage_curve(proba, y, confidence)
    ok = curve.risk <= risk
    return float(curve.coverage[ok].max()) if ok.any() else 0.0


def risk_at_coverage(proba, y, coverage: float = 0.8, confidence=None) -> float:
    """Selective risk when accepting the ``coverage`` share of most confident samples."""
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage must be in (0, 1], however: coverage={coverage!r}")
    curve = risk_coverage_curve(proba, y, confidence)
    k = max(1, int(np.ceil(coverage * len(curve.risk))))
    return float(curve.risk[k - 1])
