"""The simplest combiners: the plain mean of all members, and the single best member."""

from __future__ import annotations

import numpy as np

from ensemblex.combiners.base import WeightedAverage, member_losses


class Mean(WeightedAverage):
    """Average all members with equal weights.

    Parameters
    ----------
    metric : str or Metric, default "auto"
        Used to report scores.

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

    def _find_weights(self, values, y, sample_weight):
        m = values.shape[1]
        return np.full(m, 1.0 / m)


class BestSingle(WeightedAverage):
    """The one member with the best out-of-fold score.

    Ties go to the first member in order.

    Parameters
    ----------
    metric : str or Metric, default "auto"
        Score that ranks the members.

    Attributes
    ----------
    best_member_ : str
    best_index_ : int
    member_scores_ : dict of str to float
        Every member's out-of-fold score (metric orientation).
    weights_ : ndarray of shape (n_members,)
        One-hot on the chosen member.

    Examples
    --------
    >>> import numpy as np
    >>> P = np.array([[[1.0], [3.0]], [[2.0], [4.0]]])
    >>> BestSingle().fit(P, [3.1, 3.9]).best_index_
    1
    """

    def __init__(self, metric="auto"):
        self.metric = metric

    def _find_weights(self, values, y, sample_weight):
        losses = member_losses(self.metric_, values, y, sample_weight)
        self.best_index_ = int(np.argmin(losses))
        self.best_member_ = self.members_[self.best_index_]
        sign = -1.0 if self.metric_.greater_is_better else 1.0
        self.member_scores_ = {m: float(sign * s) for m, s in zip(self.members_, losses)}
        weights = np.zeros(values.shape[1])
        weights[self.best_index_] = 1.0
        return weights
