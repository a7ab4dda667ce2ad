"""The simplest combiners: the plain mean of all members, and the single best member."""

from __future__ import annotations

import numpy as np

from ensemblex.combiners.base import Combiner, member_losses, weighted_average


class Mean(Combiner):
    """Average all members with equal weights.

    Attributes
    ----------
    weights_ : ndarray of shape (n_members,)

    Examples
    --------
    >>> import numpy as np
    >>> P = np.array([[[1.0], [3.0]], [[2.0], [4.0]]])
    >>> Mean().fit(P, [2.0, 3.0]).predict(P).ravel().tolist()
    [2.0, 3.0]
    """

    def __init__(self, metric="auto"):
        self.metric = metric

    def _fit(self, values, y, sample_weight):
        m = values.shape[1]
        self.weights_ = np.full(m, 1.0 / m)

    def _predict(self, values):
        return weighted_average(values, self.weights_)


class BestSingle(Combiner):
    """The one member with the best out-of-fold score.

    Ties go to the first member in order.

    Attributes
    ----------
    best_member_ : str
    best_index_ : int
    member_scores_ : dict of str to float
        Every member's out-of-fold score (metric orientation).
    weights_ : ndarray of shape (n_members,)
        One-hot on the chosen member.
    """

    def __init__(self, metric="auto"):
        self.metric = metric

    def _fit(self, values, y, sample_weight):
        losses = member_losses(self.metric_, values, y, sample_weight)
        self.best_index_ = int(np.argmin(losses))
        self.best_member_ = self.members_[self.best_index_]
        sign = -1.0 if self.metric_.greater_is_better else 1.0
        self.member_scores_ = {m: float(sign * s) for m, s in zip(self.members_, losses)}
        self.weights_ = np.zeros(values.shape[1])
        self.weights_[self.best_index_] = 1.0

    def _predict(self, values):
        return values[:, self.best_index_].copy()
