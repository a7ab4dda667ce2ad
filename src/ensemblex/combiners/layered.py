"""An ensemble of combiners: a weighted mean of several fitted combiners' outputs.

:class:`AutoCombiner` builds one when the second level wins its nested cross-validation:
the candidates' held-out predictions are themselves members, greedy selection weighs them,
and the candidates with a non-zero weight are refit on all rows.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.base import clone

from ensemblex.combiners.base import Combiner
from ensemblex.combiners.state import is_fitted_combiner
from ensemblex.predictions import Predictions
from ensemblex.tasks import is_classification


class CombinerEnsemble(Combiner):
    """A convex combination of fitted combiners over the same members.

    Parameters
    ----------
    combiners : dict of str to Combiner
        Combiners keyed by a name; ``fit`` fits a clone of each on the same rows.
    weights : dict of str to float
        Non-negative weight of each combiner (normalised to sum to one).
    metric : str, default "auto"

    Attributes
    ----------
    combiners_ : dict of str to Combiner
        The fitted clones.
    combiner_weights_ : ndarray of shape (n_combiners,)
        In the order of ``combiners_``.
    """

    _parameter_constraints: ClassVar[dict] = {
        **Combiner._parameter_constraints,
        "combiners": [dict],
        "weights": [dict],
    }

    uses_features = "optional"  # passed to the combiners that read them

    def __init__(self, combiners=None, weights=None, metric="auto"):
        self.combiners = combiners
        self.weights = weights
        self.metric = metric

    def _fit(self, values, y, sample_weight, X=None):
        combiners, weights = dict(self.combiners or {}), dict(self.weights or {})
        if not combiners or set(weights) != set(combiners):
            raise ValueError(
                "combiners and weights must name the same non-empty set of combiners, however: "
                f"{sorted(combiners)} and {sorted(weights)}"
            )
        w = np.array([float(weights[name]) for name in combiners])
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"weights must be non-negative and not all zero, however: {weights}")
        P = Predictions(values, self.members_, self.task_, classes=self.classes_)
        labels = self.classes_[y] if is_classification(self.task_) else y
        fitted = self.__dict__.pop("_fitted_on_these_rows", {})  # for this fit only
        self.combiners_ = {
            name: fitted[name]
            if name in fitted
            else clone(combiner).fit(P, labels, X=X, sample_weight=sample_weight)
            for name, combiner in combiners.items()
        }
        self.combiner_weights_ = w / w.sum()

    def reuse(self, fitted: dict[str, Combiner]) -> CombinerEnsemble:
        """Take ``fitted`` (combiners by name) as already fitted on the rows the next ``fit``
        gets, instead of refitting them. :class:`AutoCombiner` fits some candidates on all
        rows during its search (the pool, as its folds' warm start); refitting letter's pool
        cost about another second.

        Returns
        -------
        self
        """
        self._fitted_on_these_rows = dict(fitted)
        return self

    def _predict(self, values, X=None):
        out = np.zeros((len(values), self.n_outputs_))
        for weight, combiner in zip(self.combiner_weights_, self.combiners_.values()):
            out += weight * combiner._combine(values, X)
        return out

    def used_members(self) -> np.ndarray:
        used = np.zeros(len(self.members_), dtype=bool)
        for weight, combiner in zip(self.combiner_weights_, self.combiners_.values()):
            if weight > 0:
                used |= combiner.used_members()
        return used

    def _set_fitted_state(self, fitted: dict) -> None:
        combiners = fitted.get("combiners_")
        weights = np.asarray(fitted.get("combiner_weights_"), dtype=np.float64)
        if not isinstance(combiners, dict) or weights.shape != (len(combiners),):
            raise ValueError("the CombinerEnsemble state must hold one weight per combiner")
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError("CombinerEnsemble weights must be finite and non-negative")
        for name, combiner in combiners.items():
            if not is_fitted_combiner(combiner) or tuple(combiner.members_) != self.members_:
                raise ValueError(f"combiner {name!r} must be fitted on the same members")
        super()._set_fitted_state({**fitted, "combiner_weights_": weights})
