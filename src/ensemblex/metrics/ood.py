"""Out-of-distribution scores from an ensemble, and how well they separate OOD from ID.

Scores are per sample and oriented so that higher means "more likely out of distribution".
Inputs are member predictions ``P`` (n_samples, n_members, n_classes) of probabilities, or
(n_samples, n_members) means for regression.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

_EPS = np.finfo(np.float64).eps


def _entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    return -np.sum(p * np.log(np.clip(p, _EPS, 1.0)), axis=axis)


def max_probability_score(P: np.ndarray) -> np.ndarray:
    """1 - max probability of the ensemble mean (low confidence = OOD)."""
    return 1.0 - P.mean(axis=1).max(axis=1)


def entropy_score(P: np.ndarray) -> np.ndarray:
    """Predictive entropy of the ensemble mean."""
    return _entropy(P.mean(axis=1))


def mutual_information_score(P: np.ndarray) -> np.ndarray:
    """Mutual information between the label and the member: entropy of the mean minus the
    mean entropy of the members (the members' disagreement)."""
    return _entropy(P.mean(axis=1)) - _entropy(P, axis=2).mean(axis=1)


def energy_score(logits: np.ndarray) -> np.ndarray:
    """Negative free energy, -logsumexp of the (member-averaged) logits, for (n, m, k) or (n, k)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 3:
        logits = logits.mean(axis=1)
    return -logsumexp(logits, axis=1)


def variance_score(means: np.ndarray) -> np.ndarray:
    """Regression: variance of the members' predicted means."""
    return np.asarray(means, dtype=np.float64).var(axis=1)


OOD_SCORES = {
    "max_probability": max_probability_score,
    "entropy": entropy_score,
    "mutual_information": mutual_information_score,
}


@dataclass(frozen=True)
class Detection:
    """How well a score separates OOD (positive) from in-distribution samples."""

    auroc: float
    aupr: float
    fpr_at_95_tpr: float


def detection_metrics(score_id, score_ood) -> Detection:
    """AUROC, AUPR (OOD as positive) and FPR at 95% TPR, from scikit-learn's curves."""
    score_id, score_ood = np.asarray(score_id, float), np.asarray(score_ood, float)
    labels = np.r_[np.zeros(len(score_id)), np.ones(len(score_ood))]
    scores = np.r_[score_id, score_ood]
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fpr95 = float(fpr[np.searchsorted(tpr, 0.95, side="left")])
    return Detection(
        float(roc_auc_score(labels, scores)), float(average_precision_score(labels, scores)), fpr95
    )
