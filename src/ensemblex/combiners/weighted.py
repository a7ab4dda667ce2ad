"""Optimised convex weights: non-negative, summing to one, found with ``scipy.optimize``."""

from __future__ import annotations

from numbers import Real
from typing import ClassVar

import numpy as np
from scipy.optimize import minimize
from sklearn.utils._param_validation import Interval

from ensemblex.combiners.base import WeightedAverage
from ensemblex.tasks import is_classification

_EPS = np.finfo(np.float64).eps


def _squared_error_objective(values, y, w):
    """Mean squared error of ``X @ weights`` as a quadratic form, with its gradient.

    Works on the (m, m) Gram matrix so that each evaluation costs O(m^2), not O(n m).
    Targets are scaled by their spread so that the optimiser's tolerances mean the same
    whatever the unit of y.
    """
    scale = np.sqrt(((y - y @ w) ** 2) @ w) or 1.0
    X = values[:, :, 0] / scale
    t = y / scale
    gram = X.T @ (X * w[:, None])
    cross = X.T @ (t * w)

    def fun(weights):
        g = gram @ weights
        return weights @ g - 2 * cross @ weights, 2 * (g - cross)

    return fun


def _log_loss_objective(values, y, w):
    """Weighted log-loss of the mixture, with its gradient; uses only true-class columns."""
    p_true = np.take_along_axis(values, y[:, None, None], axis=2)[..., 0]  # (n, m)

    def fun(weights):
        q = np.maximum(p_true @ weights, _EPS)
        return -(np.log(q) @ w), -(p_true.T @ (w / q))

    return fun


class Weighted(WeightedAverage):
    """Convex combination of members with optimised weights.

    Minimises squared error (regression) or log-loss (classification) over the simplex
    (weights >= 0, summing to 1) with SLSQP, from uniform weights. Those smooth losses
    stand in for any chosen metric: optimising a label metric such as accuracy directly
    is piecewise constant and has no useful gradient.

    Parameters
    ----------
    metric : str, default "auto"
        Used to report scores; the optimised loss is fixed by the task (see above).
    tol : float, default 1e-10
        SLSQP tolerance.

    Attributes
    ----------
    weights_ : ndarray of shape (n_members,)
    converged_ : bool
        Whether SLSQP reported success.
    """

    _parameter_constraints: ClassVar[dict] = {
        **WeightedAverage._parameter_constraints,
        "tol": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, metric="auto", tol=1e-10):
        self.metric = metric
        self.tol = tol

    def _find_weights(self, values, y, sample_weight):
        weights, self.converged_ = convex_weights(values, y, self.task_, sample_weight, self.tol)
        return weights


def convex_weights(
    values: np.ndarray, y: np.ndarray, task: str, sample_weight=None, tol: float = 1e-10
) -> tuple[np.ndarray, bool]:
    """Non-negative member weights summing to one that minimise the mixture's log-loss
    (classes, ``y`` as codes) or squared error, by SLSQP; and whether SLSQP converged.

    ``values``: (n, m, k); ``sample_weight``: (n,) or None. Shared by :class:`Weighted` and
    the combiners that start from or shrink toward static weights (routing, fusion).
    """
    n, m, _ = values.shape
    w = np.full(n, 1.0 / n) if sample_weight is None else sample_weight / sample_weight.sum()
    if is_classification(task):
        fun = _log_loss_objective(values, y, w)
    else:
        fun = _squared_error_objective(values, y, w)
    result = minimize(
        fun,
        np.full(m, 1.0 / m),
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * m,
        constraints=[
            {"type": "eq", "fun": lambda v: v.sum() - 1.0, "jac": lambda v: np.ones_like(v)}
        ],
        options={"maxiter": 1000, "ftol": tol},
    )
    # SLSQP leaves dust like 1e-17 on members it dropped: make those exact zeros.
    weights = np.where(result.x > 1e-9, result.x, 0.0)
    return weights / weights.sum(), bool(result.success)
