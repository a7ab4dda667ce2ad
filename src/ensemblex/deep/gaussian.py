"""A Gaussian head for deep regression members: a mean and a variance per member, trained
by Gaussian negative log-likelihood (the deep-ensembles recipe of Lakshminarayanan et al.,
2017, without its adversarial examples).

A member's two raw outputs ``(mean, r)`` give the variance ``softplus(r) + min_variance``:
softplus keeps it positive with a gradient everywhere, and the floor keeps a member from
driving the likelihood to infinity on a few exactly fitted rows. Everything here works on the
standardised target; :func:`gaussian_moments` turns the outputs back into y's unit.
:class:`~ensemblex.deep.ensemble.DeepEnsembleRegressor` uses these with
``distribution="gaussian"``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

DISTRIBUTIONS = (None, "gaussian")
_LOG_2PI = math.log(2 * math.pi)


def gaussian_head(out: torch.Tensor, min_variance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance from raw outputs ``(..., 2)``; each of shape ``(...)``.

    Examples
    --------
    >>> mean, var = gaussian_head(torch.tensor([[1.0, 0.0]]), 0.01)
    >>> mean.tolist(), round(var.item(), 4)  # softplus(0) = log 2
    ([1.0], 0.7031)
    """
    return out[..., 0], F.softplus(out[..., 1]) + min_variance


def gaussian_member_nll(
    out: torch.Tensor, y: torch.Tensor, min_variance: float, *, member_axis: int = 0
) -> torch.Tensor:
    """Mean of the K members' Gaussian NLLs (each member on its own).

    Input: ``out`` of shape ``(K, B, 2)`` (``member_axis=0``) or ``(B, K, 2)``; ``y`` of shape
    ``(B,)`` shared by the members, or with the member axis where ``out`` has it (each member
    its own batch). Output: a scalar (the constant ``log(2 pi) / 2`` included).
    """
    mean, var = gaussian_head(out, min_variance)
    if y.dim() == mean.dim() - 1:
        y = y.unsqueeze(member_axis).expand(mean.shape)
    return 0.5 * (_LOG_2PI + torch.log(var) + (y - mean) ** 2 / var).mean()


def gaussian_mixture_nll(
    out: torch.Tensor, y: torch.Tensor, min_variance: float, *, member_axis: int = 0
) -> float:
    """NLL of the equal-weight mixture of the members' Gaussians (what early stopping
    watches). Input: ``out`` ``(K, B, 2)`` (``member_axis=0``) or ``(B, K, 2)``, ``y`` ``(B,)``."""
    mean, var = gaussian_head(out, min_variance)
    y = y.unsqueeze(member_axis)
    log_pdf = -0.5 * (_LOG_2PI + torch.log(var) + (y - mean) ** 2 / var)
    k = mean.shape[member_axis]
    return float(-(torch.logsumexp(log_pdf, dim=member_axis) - math.log(k)).mean())


def gaussian_moments(
    out: torch.Tensor, min_variance: float, y_mean: float, y_scale: float
) -> np.ndarray:
    """Members' means and variances in y's unit, ``(n_samples, K, 2)`` float64, from raw
    outputs ``(K, n_samples, 2)`` on the standardised target."""
    mean, var = gaussian_head(out.double(), min_variance)
    moments = torch.stack([mean * y_scale + y_mean, var * y_scale**2], dim=-1)
    return moments.permute(1, 0, 2).numpy()


def check_distribution(distribution, min_variance) -> None:
    """Door check of ``distribution`` and ``min_variance``."""
    if distribution not in DISTRIBUTIONS:
        raise ValueError(
            f"distribution must be None or 'gaussian', however: distribution={distribution!r}"
        )
    if not (isinstance(min_variance, int | float) and 0 < min_variance < 1):
        raise ValueError(
            "min_variance must be a number in (0, 1) (a share of y's variance), however: "
            f"min_variance={min_variance!r}"
        )
