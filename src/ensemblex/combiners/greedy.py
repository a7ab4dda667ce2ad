"""Greedy forward selection of members with replacement (Caruana et al., 2004).

Each iteration adds the member whose inclusion gives the best ensemble score; the
ensemble is the running mean of the chosen members, so a member chosen twice weighs twice.
All candidates are scored in one vectorised step per iteration from a running sum, the
whole trajectory is kept and the best prefix is used (AutoGluon's ``EnsembleSelection``
with ``ensemble_size=25`` is the same procedure). With ``n_bags > 1`` the selection is run
on bootstrap resamples of the rows and the weights averaged (bagged ensemble selection,
Caruana et al. 2006), which shrinks the weights' variance on small data.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval

from ensemblex.combiners.base import WeightedAverage


class GreedySelection(WeightedAverage):
    """Caruana ensemble selection.

    Parameters
    ----------
    n_iterations : int, default 25
        Number of greedy steps (members picked, with repetition).
    metric : str, default "auto"
        Score to optimise: RMSE or log-loss by default; label metrics such as
        ``"accuracy"`` work too (they score the argmax of the mixture).
    with_replacement : bool, default True
        Whether a member may be picked again.
    tie_rtol : float, default 1e-12
        Candidates whose losses are this close (relative) to the best count as tied. Ties
        go to a member already in the ensemble, then to the first in member order, so the
        result is deterministic.
    n_bags : int, default 1
        Bootstrap resamples of the rows to select on; the weights are their mean.
    random_state : int, default 0
        Seed of the bootstrap resamples.

    Attributes
    ----------
    weights_ : ndarray of shape (n_members,)
        Pick counts over the best prefix, divided by its length (averaged over the bags).
    indices_ : list of int
        Members picked, in order, over the best prefix (of the selection on all rows).
    trajectory_ : ndarray of shape (n_steps,)
        Ensemble score after each step (metric orientation), all steps.
    best_iteration_ : int
        Number of steps in the best prefix.
    """

    _parameter_constraints: ClassVar[dict] = {
        **WeightedAverage._parameter_constraints,
        "n_iterations": [Interval(Integral, 1, None, closed="left")],
        "with_replacement": ["boolean"],
        "tie_rtol": [Interval(Real, 0, None, closed="left")],
        "n_bags": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        n_iterations=25,
        metric="auto",
        with_replacement=True,
        tie_rtol=1e-12,
        n_bags=1,
        random_state=0,
    ):
        self.n_iterations = n_iterations
        self.metric = metric
        self.with_replacement = with_replacement
        self.tie_rtol = tie_rtol
        self.n_bags = n_bags
        self.random_state = random_state

    def _find_weights(self, values, y, sample_weight):
        # only what the metric reads (log-loss: the true class), for every step of every bag
        values, y = self.metric_.scored_part(y, values)
        weights = self._select(values, y, sample_weight)
        if self.n_bags == 1:
            return weights
        rng = check_random_state(self.random_state)
        total = np.zeros_like(weights)
        for _ in range(int(self.n_bags)):
            # a resample as weights: each drawn row once, weighted by its draws. Every metric
            # is a weighted mean over rows, so the scores are the resample's, and the third
            # of the rows no draw picked costs nothing (a letter-sized second level: 1.45x faster)
            draws = np.bincount(rng.randint(0, len(y), len(y)), minlength=len(y))
            rows = np.flatnonzero(draws)
            sw = draws[rows] * (1.0 if sample_weight is None else sample_weight[rows])
            if sw.sum() <= 0:
                rows, sw = np.arange(len(y)), sample_weight
            total += self._select(values[rows], y[rows], sw, record=False)
        return total / self.n_bags

    def _select(self, values, y, sample_weight, record=True):
        n, m, k = values.shape
        steps = int(self.n_iterations) if self.with_replacement else min(int(self.n_iterations), m)
        running_sum = np.zeros((n, k))
        used = np.zeros(m, dtype=bool)
        order: list[int] = []
        losses: list[float] = []
        mixture_losses = self.metric_.mixture_losses(y, values, sample_weight)
        for step in range(steps):
            candidate_losses = mixture_losses(running_sum, 1.0 / (step + 1))
            if not self.with_replacement:
                candidate_losses[used] = np.inf
            best = self._break_ties(candidate_losses, used)
            running_sum += values[:, best]
            used[best] = True
            order.append(best)
            # Scored again directly: the fast mixture scores rank candidates, but may carry
            # rounding (e.g. an expanded square) that should not decide the best prefix.
            ensemble = running_sum[None] / (step + 1)
            losses.append(float(self.metric_.loss_batch(y, ensemble, sample_weight)[0]))
            if m == 1:
                break
        best_len = int(np.argmin(losses)) + 1
        if record:
            self.indices_ = order[:best_len]
            self.best_iteration_ = best_len
            sign = -1.0 if self.metric_.greater_is_better else 1.0
            self.trajectory_ = sign * np.asarray(losses)
        return np.bincount(order[:best_len], minlength=m) / best_len

    def _break_ties(self, losses: np.ndarray, used: np.ndarray) -> int:
        best = np.nanmin(losses)
        # np.isclose(losses, best, rtol, atol=0) written out: it is called at every step
        tied = (losses == best) | (np.abs(losses - best) <= self.tie_rtol * np.abs(best))
        tied_used = tied & used
        return int(np.argmax(tied_used if tied_used.any() else tied))
