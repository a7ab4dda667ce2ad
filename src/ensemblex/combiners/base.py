"""The combiner protocol: ``fit(P, y, sample_weight=None)``, ``predict(P)``, and state as data.

A combiner maps members' predictions ``(n_samples, n_members, n_outputs)`` to one prediction
``(n_samples, n_outputs)``: a regression value or probabilities over the classes. Its fitted
state is data: :meth:`Combiner.get_state` gives a JSON-able dict and named numeric arrays, and
:meth:`Combiner.from_state` rebuilds an equal combiner from them, so saving, loading and
serving need no per-class code. :class:`WeightedAverage` is the ensemble that is a weight
vector; the combiners that only find weights derive from it.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from ensemblex.combiners.state import combiner_class, decode, encode, register
from ensemblex.metrics import Metric, get_metric
from ensemblex.predictions import Predictions, as_predictions
from ensemblex.tasks import encode_labels, is_classification

# Fitted attributes every combiner has; get_state stores them under their own keys.
_COMMON_FITTED = ("members_", "task_", "classes_", "n_outputs_", "metric_")
STATE_VERSION = 1


class Combiner(BaseEstimator):
    """Base class: input checks and state shared by every combiner.

    Subclasses implement ``_fit(values, y, sample_weight)`` and ``_predict(values)`` on plain
    arrays and declare ``_parameter_constraints`` for their constructor parameters; this
    class validates inputs and records ``members_``, ``task_``, ``classes_``, ``metric_`` and
    ``n_outputs_``. Every subclass is registered by class name for :meth:`from_state`.
    """

    _parameter_constraints: ClassVar[dict] = {"metric": [str, Metric]}

    metric: str | Metric = "auto"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        register(cls)

    def fit(self, P, y, sample_weight=None):
        """Fit on out-of-fold predictions.

        Parameters
        ----------
        P : Predictions or ndarray of shape (n_samples, n_members, n_outputs)
        y : array-like of shape (n_samples,)
            Targets; class labels (from ``P.classes``) for classification.
        sample_weight : array-like of shape (n_samples,), optional
            Finite, non-negative, not all zero.

        Returns
        -------
        self
        """
        self._validate_params()
        self._fitted_on_names = isinstance(P, Predictions)
        P = as_predictions(P)
        y = np.asarray(y)
        if y.shape != (P.n_samples,):
            raise ValueError(
                f"y must have shape ({P.n_samples},) to match P, however: y.shape={y.shape}"
            )
        if is_classification(P.task):
            y = encode_labels(y, P.classes)
        else:
            y = y.astype(np.float64)
            if not np.all(np.isfinite(y)):
                raise ValueError("y holds NaN or inf; regression targets must be finite")
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                sample_weight, y, dtype=np.float64, ensure_non_negative=True
            )
            if sample_weight.sum() <= 0:
                raise ValueError("sample_weight must not be all zero")
        self.members_ = P.members
        self.task_ = P.task
        self.classes_ = P.classes
        self.n_outputs_ = P.n_outputs
        self.metric_ = get_metric(getattr(self, "metric", "auto"), P.task)
        self._fit(P.values, y, sample_weight)
        return self

    def predict(self, P) -> np.ndarray:
        """Combine members' predictions.

        Parameters
        ----------
        P : Predictions or ndarray of shape (n_samples, n_members, n_outputs)
            The same members, in the same order, as at fit time.

        Returns
        -------
        ndarray of shape (n_samples, n_outputs)
            Regression values, or class probabilities in the order of ``classes_``.
        """
        check_is_fitted(self, "members_", msg="%(name)s is not fitted yet; call fit first")
        if isinstance(P, Predictions) and P.members != self.members_:
            if set(P.members) == set(self.members_):
                P = P.select(self.members_)
            elif self._fitted_on_names:
                raise ValueError(
                    f"P has members {list(P.members)}, however the combiner was fitted on "
                    f"{list(self.members_)}"
                )
        P = as_predictions(P)
        if P.n_members != len(self.members_) or P.n_outputs != self.n_outputs_:
            raise ValueError(
                f"P must have {len(self.members_)} members and {self.n_outputs_} outputs, "
                f"however: P.shape={P.shape}"
            )
        return self._predict(P.values)

    def used_members(self) -> np.ndarray:
        """Which members the combined output depends on: a boolean per member of
        ``members_``. A member marked False can be left out of prediction (any finite
        column in its place gives the same output), so a deployed model neither saves nor
        runs it. All True unless the combiner knows better (zero weights, pruned members).
        """
        check_is_fitted(self, "members_", msg="%(name)s is not fitted yet; call fit first")
        return np.ones(len(self.members_), dtype=bool)

    def warm_start_from(self, fitted: Combiner) -> Combiner:
        """Start the next ``fit`` from ``fitted``'s solution, where the combiner can (an
        iterative solver); by default a no-op. Returns self."""
        return self

    def predict_folds(self, folds) -> np.ndarray:
        """Combine each cross-fitting fold's predictions, then average ("fold-consistent").

        At fit time a combiner sees out-of-fold predictions, each made by a fold model fit
        on part of the rows; the mean of all fold models' predictions on new rows is sharper
        than any of those. Combining each fold model's predictions as they are, then
        averaging the combined outputs, keeps new rows like the rows the combiner was fitted
        on. For a weighted average both give the same numbers.

        Parameters
        ----------
        folds : sequence of Predictions, or ndarray (n_folds, n_samples, n_members, n_outputs)
            Every fold model's predictions on the same rows, members in the same order.

        Returns
        -------
        ndarray of shape (n_samples, n_outputs)
        """
        folds = list(folds)
        if not folds:
            raise ValueError("folds must hold the predictions of at least one fold model")
        total = self.predict(folds[0])
        for fold in folds[1:]:
            total = total + self.predict(fold)
        return total / len(folds)

    def score(self, P, y, sample_weight=None) -> float:
        """The metric (``metric_``) of the combined prediction against ``y``."""
        pred = self.predict(P)
        if is_classification(self.task_):
            y = encode_labels(np.asarray(y), self.classes_)
        return self.metric_.score(y, pred, sample_weight)

    # ------------------------------------------------------------ state
    def get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """The fitted combiner as data: a JSON-able dict and named numeric arrays.

        The dict holds the class name, the constructor parameters, ``members_``, ``task_``,
        ``classes_``, ``n_outputs_``, the metric's name and every other fitted attribute
        (public, ending in ``_``); arrays are referenced by name and returned apart.

        Examples
        --------
        >>> import json, numpy as np
        >>> from ensemblex.combiners import Mean
        >>> P = np.array([[[1.0], [3.0]], [[2.0], [4.0]]])
        >>> state, arrays = Mean().fit(P, [2.0, 3.0]).get_state()
        >>> state["class"], state["fitted"], arrays
        ('Mean', {'weights_': {'__array__': 'weights_'}}, {'weights_': array([0.5, 0.5])})
        >>> Combiner.from_state(json.loads(json.dumps(state)), arrays).predict(P).ravel()
        array([2., 3.])
        """
        arrays: dict[str, np.ndarray] = {}
        return self._state(arrays, prefix=""), arrays

    def _state(self, arrays: dict[str, np.ndarray], prefix: str) -> dict:
        """:meth:`get_state`'s dict, its arrays added to ``arrays`` with names under ``prefix``."""
        check_is_fitted(self, "members_", msg="%(name)s is not fitted yet; nothing to save")
        return {
            "class": type(self).__name__,
            "state_version": STATE_VERSION,
            "params": encode(self.get_params(deep=False), f"{prefix}params", arrays),
            "members": list(self.members_),
            "task": self.task_,
            "classes": None if self.classes_ is None else np.asarray(self.classes_).tolist(),
            "n_outputs": int(self.n_outputs_),
            "metric": self.metric_.name,
            "fitted_on_names": bool(getattr(self, "_fitted_on_names", True)),
            "fitted": {
                name: encode(value, f"{prefix}{name}", arrays)
                for name, value in self._fitted_state().items()
            },
        }

    @classmethod
    def from_state(cls, state: dict, arrays: dict[str, np.ndarray]) -> Combiner:
        """Rebuild a fitted combiner from :meth:`get_state`'s dict and arrays.

        Called on :class:`Combiner` itself, it builds the class the state names.
        """
        if not isinstance(state, dict):
            raise ValueError(f"state must be a dict, however: state={type(state).__name__}")
        target = combiner_class(state.get("class"))
        if not issubclass(target, cls):
            raise ValueError(f"the state holds a {target.__name__}, not a {cls.__name__}")
        if target is not cls:
            return target.from_state(state, arrays)
        missing = {"params", "members", "task", "classes", "n_outputs", "metric", "fitted"}
        missing -= set(state)
        if missing:
            raise ValueError(f"the {cls.__name__} state lacks {sorted(missing)}")
        try:
            combiner = cls(**decode(state["params"], arrays))
        except TypeError as exc:
            raise ValueError(f"the {cls.__name__} state has bad params: {exc}") from None
        combiner.members_ = tuple(state["members"])
        combiner.task_ = state["task"]
        combiner.classes_ = None if state["classes"] is None else np.asarray(state["classes"])
        combiner.n_outputs_ = int(state["n_outputs"])
        combiner.metric_ = get_metric(state["metric"], state["task"])
        combiner._fitted_on_names = bool(state.get("fitted_on_names", True))
        fitted = decode(state["fitted"], arrays)
        bad = [
            name
            for name in fitted
            if not name.isidentifier()
            or name.startswith("_")
            or not name.endswith("_")
            or name in _COMMON_FITTED
        ]
        if bad:
            raise ValueError(f"the {cls.__name__} state has invalid fitted attributes: {bad}")
        combiner._set_fitted_state(fitted)
        return combiner

    def _fitted_state(self) -> dict:
        """Fitted attributes to store: public ones ending in ``_``, but the common ones."""
        return {
            name: value
            for name, value in vars(self).items()
            if name.endswith("_") and not name.startswith("_") and name not in _COMMON_FITTED
        }

    def _set_fitted_state(self, fitted: dict) -> None:
        """Set decoded fitted attributes; subclasses check or rebuild them here."""
        for name, value in fitted.items():
            setattr(self, name, value)

    # ------------------------------------------------------------ subclasses
    def _fit(self, values: np.ndarray, y: np.ndarray, sample_weight) -> None:
        raise NotImplementedError

    def _predict(self, values: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class WeightedAverage(Combiner):
    """A combiner that is a weight vector: the prediction is the weighted mean of members.

    Subclasses only find the weights: they implement ``_find_weights(values, y,
    sample_weight) -> (n_members,)``, non-negative and summing to one.

    Attributes
    ----------
    weights_ : ndarray of shape (n_members,)
    """

    def _fit(self, values, y, sample_weight):
        self.weights_ = self._find_weights(values, y, sample_weight)

    def _find_weights(self, values: np.ndarray, y: np.ndarray, sample_weight) -> np.ndarray:
        raise NotImplementedError

    def _predict(self, values):
        return weighted_average(values, self.weights_)

    def used_members(self) -> np.ndarray:
        return np.asarray(self.weights_) > 0

    def _set_fitted_state(self, fitted: dict) -> None:
        weights = np.asarray(fitted.get("weights_"), dtype=np.float64)
        m = len(self.members_)
        if weights.shape != (m,) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError(
                f"weights_ must be {m} finite non-negative numbers, however: "
                f"weights_={fitted.get('weights_')!r}"
            )
        super()._set_fitted_state({**fitted, "weights_": weights})


def mixture_weights(combiner) -> np.ndarray | None:
    """Member weights when ``combiner`` predicts a weighted mean of the members, else None.

    A :class:`WeightedAverage`, an AutoCombiner or ensemble of combiners made only of such
    (whose weights compose) has them; a meta-model or a log-linear pool does not.
    """
    inner = getattr(combiner, "combiner_", None)
    if inner is not None:
        return mixture_weights(inner)
    if isinstance(combiner, WeightedAverage):
        return np.asarray(combiner.weights_, dtype=np.float64)
    parts = getattr(combiner, "combiners_", None)
    if isinstance(parts, dict):
        weights = [mixture_weights(part) for part in parts.values()]
        if all(w is not None for w in weights):
            return sum(c * w for c, w in zip(combiner.combiner_weights_, weights))
    return None


def weighted_average(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Combine ``values`` (n, m, k) with member ``weights`` (m,) into (n, k)."""
    return np.einsum("nmk,m->nk", values, weights)


def member_losses(metric: Metric, values: np.ndarray, y, sample_weight=None) -> np.ndarray:
    """Each member's loss (lower is better), all members in one vectorised call; shape (m,)."""
    return metric.loss_batch(y, values.transpose(1, 0, 2), sample_weight)
