"""Ensembles in weight space: model soups and WiSE-FT.

Models fine-tuned from one shared start often lie in one basin of the loss, so the average
of their weights is itself a good model that costs one forward pass (Wortsman et al. 2022,
"Model soups"). :func:`uniform_soup` averages all of them; :func:`greedy_soup` adds them in
order of held-out score, keeping each only when the held-out score of the average does not
drop; :func:`wise_ft` interpolates between a base and a fine-tuned model (Wortsman et al.
2022, "Robust fine-tuning of zero-shot models") with the mixing coefficient chosen on
validation data.

A ``score_fn(module) -> float`` (higher is better) measures a module on held-out data;
:func:`make_score_fn` builds one from ``X_val, y_val``. Floating tensors are averaged;
integer buffers (BatchNorm's ``num_batches_tracked``) are copied, never averaged as floats.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ensemblex.deep.checkpoints import check_fits, check_state_dicts
from ensemblex.deep.training import StateDict, as_inputs, as_targets
from ensemblex.tasks import check_task, is_classification

ScoreFn = Callable[[nn.Module], float]


def make_score_fn(X_val, y_val, *, task: str, metric: str | None = None) -> ScoreFn:
    """A held-out score of a module, higher is better.

    Parameters
    ----------
    X_val : array-like of shape (n_samples, ...)
    y_val : array-like of shape (n_samples,)
        Class codes ``0..k-1`` for classification.
    task : {"regression", "binary", "multiclass"}
    metric : {"accuracy", "neg_log_loss", "neg_mse"}, optional
        Default ``"accuracy"`` for classification, ``"neg_mse"`` for regression.

    Returns
    -------
    callable
        ``score_fn(module) -> float``, evaluated in eval mode without gradients.
    """
    check_task(task)
    metric = metric or ("accuracy" if is_classification(task) else "neg_mse")
    allowed = ("accuracy", "neg_log_loss") if is_classification(task) else ("neg_mse",)
    if metric not in allowed:
        raise ValueError(f"metric must be one of {allowed} for task={task!r}, however: {metric!r}")
    X = as_inputs(X_val)
    y = as_targets(y_val, task, len(X))

    def score_fn(module: nn.Module) -> float:
        was_training = module.training
        module.eval()
        with torch.no_grad():
            out = module(X)
        module.train(was_training)
        if metric == "accuracy":
            return float((out.argmax(dim=-1) == y).double().mean())
        if metric == "neg_log_loss":
            return -float(F.cross_entropy(out.double(), y))
        return -float(F.mse_loss(out.reshape(len(y), -1)[:, 0].double(), y.double()))

    return score_fn


def uniform_soup(state_dicts: Sequence[Mapping[str, torch.Tensor]]) -> StateDict:
    """The mean of the weights of all ``state_dicts`` (same keys and shapes).

    Floating tensors are averaged; other tensors (integer buffers) are copied from the first
    state dict.

    Examples
    --------
    >>> a, b = {"w": torch.tensor([0.0, 2.0])}, {"w": torch.tensor([2.0, 4.0])}
    >>> uniform_soup([a, b])["w"]
    tensor([1., 3.])
    """
    check_state_dicts(state_dicts, "state_dicts")
    soup = {}
    for key, first in state_dicts[0].items():
        if first.is_floating_point() or first.is_complex():
            # accumulate in float64 so a soup of many ingredients loses no precision
            stacked = torch.stack([sd[key].detach().double() for sd in state_dicts])
            soup[key] = stacked.mean(dim=0).to(first.dtype)
        else:
            soup[key] = first.detach().clone()
    return soup


def interpolate(
    base_state: Mapping[str, torch.Tensor],
    finetuned_state: Mapping[str, torch.Tensor],
    alpha: float,
) -> StateDict:
    """``(1 - alpha) * base + alpha * finetuned`` for floating tensors.

    Integer buffers come from the nearer end (``base`` when ``alpha < 0.5``), so ``alpha=0``
    and ``alpha=1`` return the two state dicts exactly.
    """
    check_state_dicts([base_state, finetuned_state], "[base_state, finetuned_state]")
    alpha = float(alpha)
    out = {}
    for key, base in base_state.items():
        tuned = finetuned_state[key]
        if base.is_floating_point():
            # lerp is exact at both ends, unlike base + alpha * (tuned - base)
            out[key] = torch.lerp(base.detach(), tuned.detach(), alpha)
        else:
            out[key] = (base if alpha < 0.5 else tuned).detach().clone()
    return out


def _score_state(module: nn.Module, state: Mapping[str, torch.Tensor], score_fn: ScoreFn) -> float:
    module.load_state_dict(state)
    score = float(score_fn(module))
    if not np.isfinite(score):
        raise ValueError(f"score_fn must return a finite number, however: {score}")
    return score


@dataclass
class GreedySoupResult:
    """What :func:`greedy_soup` chose.

    Attributes
    ----------
    state : dict
        The soup's weights (also loaded into the module).
    ingredients : list of int
        Indices into the given ``state_dicts``, in the order they were added.
    score : float
        Held-out score of the soup.
    ingredient_scores : list of float
        Held-out score of each given state dict on its own.
    trace : list of (int, float, bool)
        Every candidate in the order tried: index, held-out score of the soup with it, kept.
    """

    state: StateDict
    ingredients: list[int]
    score: float
    ingredient_scores: list[float]
    trace: list[tuple[int, float, bool]]


def greedy_soup(
    module: nn.Module,
    state_dicts: Sequence[Mapping[str, torch.Tensor]],
    score_fn: ScoreFn,
) -> GreedySoupResult:
    """Greedy soup (Wortsman et al. 2022, Recipe 1).

    Sort the state dicts by held-out score, best first; start from the best; try each of the
    others in turn and keep it when the held-out score of the uniform average of the kept
    ones plus it is at least the current soup's score (ties keep, as in the paper). The soup
    therefore scores at least as well as the best ingredient on the data ``score_fn`` reads.

    Parameters
    ----------
    module : nn.Module
        The shared architecture; on return it holds the soup's weights.
    state_dicts : sequence of dict
        Fine-tunes of one shared start (same keys and shapes).
    score_fn : callable
        ``score_fn(module) -> float`` on held-out data, higher is better (see
        :func:`make_score_fn`).

    Returns
    -------
    GreedySoupResult
    """
    check_state_dicts(state_dicts, "state_dicts")
    check_fits(module, state_dicts[0], "state_dicts[0]")
    scores = [_score_state(module, sd, score_fn) for sd in state_dicts]
    # a stable sort: among equal scores, the earlier state dict is tried first
    order = sorted(range(len(state_dicts)), key=lambda i: -scores[i])
    kept = [order[0]]
    best = scores[order[0]]
    trace = [(order[0], best, True)]
    for i in order[1:]:
        candidate = uniform_soup([state_dicts[j] for j in [*kept, i]])
        score = _score_state(module, candidate, score_fn)
        keep = score >= best
        trace.append((i, score, keep))
        if keep:
            kept.append(i)
            best = score
    state = uniform_soup([state_dicts[j] for j in kept])
    module.load_state_dict(state)
    return GreedySoupResult(state, kept, best, scores, trace)


@dataclass
class WiseFTResult:
    """What :func:`wise_ft` chose.

    Attributes
    ----------
    alpha : float
        The chosen mixing coefficient (0 = base, 1 = fine-tuned).
    state : dict
        The interpolated weights at ``alpha`` (also loaded into the module).
    score : float
        Validation score at ``alpha``.
    scores : dict of float to float
        Validation score of every alpha tried.
    """

    alpha: float
    state: StateDict
    score: float
    scores: dict[float, float]


def wise_ft(
    module: nn.Module,
    base_state: Mapping[str, torch.Tensor],
    finetuned_state: Mapping[str, torch.Tensor],
    score_fn: ScoreFn,
    alphas: Sequence[float] = tuple(np.linspace(0.0, 1.0, 11)),
) -> WiseFTResult:
    """WiSE-FT: interpolate base and fine-tuned weights, choosing alpha on validation data.

    Parameters
    ----------
    module : nn.Module
        The shared architecture; on return it holds the chosen interpolation.
    base_state, finetuned_state : dict
        The start of fine-tuning and its result.
    score_fn : callable
        ``score_fn(module) -> float`` on validation data, higher is better.
    alphas : sequence of float
        Mixing coefficients to try, each in [0, 1]; ties go to the smaller alpha.

    Returns
    -------
    WiseFTResult
    """
    alphas = [float(a) for a in alphas]
    if not alphas or any(not 0.0 <= a <= 1.0 for a in alphas):
        raise ValueError(f"alphas must be a non-empty list in [0, 1], however: alphas={alphas}")
    check_state_dicts([base_state, finetuned_state], "[base_state, finetuned_state]")
    check_fits(module, base_state, "base_state")
    scores = {
        a: _score_state(module, interpolate(base_state, finetuned_state, a), score_fn)
        for a in alphas
    }
    alpha = max(sorted(scores), key=lambda a: scores[a])  # first maximum: the smallest alpha
    state = interpolate(base_state, finetuned_state, alpha)
    module.load_state_dict(state)
    return WiseFTResult(alpha, state, scores[alpha], scores)
