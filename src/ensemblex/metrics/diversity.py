"""Diversity among members, and the ambiguity decomposition of the ensemble's loss.

For the simple average, ensemble loss = average member loss - diversity, exactly:

- squared error: diversity = mean over samples of the members' variance around the ensemble
  (Krogh & Vedelsby's ambiguity);
- cross-entropy: diversity = mean of (log of the mean true-class probability) - (mean of the
  members' log true-class probabilities), the Jensen gap, >= 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EPS = np.finfo(np.float64).eps


def pairwise_disagreement(P: np.ndarray) -> np.ndarray:
    """Share of samples where two members' predicted classes differ; (m, m) matrix.

    Input: probabilities (n, m, k).
    """
    labels = P.argmax(axis=2)  # (n, m)
    k = P.shape[2]
    onehot = np.eye(k, dtype=np.float64)[labels]  # (n, m, k)
    agree = np.einsum("nik,njk->ij", onehot, onehot) / len(labels)
    return 1.0 - agree


def error_correlation(P: np.ndarray, y) -> np.ndarray:
    """Correlation of members' errors; (m, m) matrix.

    Errors are residuals for regression (``P`` of shape (n, m) or (n, m, 1)) and
    1 - P(true class) for classification (``P`` of shape (n, m, k), ``y`` class codes).
    """
    P = np.asarray(P, dtype=np.float64)
    y = np.asarray(y)
    if P.ndim == 3 and P.shape[2] > 1:
        errors = 1.0 - np.take_along_axis(P, y[:, None, None], axis=2)[..., 0]
    else:
        errors = P.reshape(len(y), -1) - y[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(np.corrcoef(errors.T), nan=0.0)


@dataclass(frozen=True)
class Ambiguity:
    """``ensemble_loss == average_member_loss - diversity`` (up to rounding)."""

    ensemble_loss: float
    average_member_loss: float
    diversity: float


def ambiguity_decomposition(P: np.ndarray, y, loss: str = "squared_error") -> Ambiguity:
    """Decompose the loss of the members' plain average.

    Parameters
    ----------
    P : ndarray
        (n, m) or (n, m, 1) predictions for ``"squared_error"``; (n, m, k) probabilities for
        ``"cross_entropy"``.
    y : array-like (n,)
        Targets, or class codes.
    loss : {"squared_error", "cross_entropy"}
    """
    P = np.asarray(P, dtype=np.float64)
    y = np.asarray(y)
    if loss == "squared_error":
        F = P.reshape(len(y), -1)
        mean = F.mean(axis=1)
        return Ambiguity(
            float(np.mean((mean - y) ** 2)),
            float(np.mean((F - y[:, None]) ** 2)),
            float(np.mean((F - mean[:, None]) ** 2)),
        )
    if loss == "cross_entropy":
        p_true = np.clip(np.take_along_axis(P, y[:, None, None], axis=2)[..., 0], _EPS, 1.0)
        ensemble = -np.log(p_true.mean(axis=1)).mean()
        members = -np.log(p_true).mean()
        return Ambiguity(float(ensemble), float(members), float(members - ensemble))
    raise ValueError(f"loss must be 'squared_error' or 'cross_entropy', however: {loss!r}")
