"""The combiner protocol: ``fit(P, y=None, X=None, sample_weight=None)``, ``predict(P, X=None)``,
and state as data.

A combiner maps members' predictions ``(n_samples, n_members, n_outputs)`` to one prediction
``(n_samples, n_outputs)``: a regression value or probabilities over the classes. Its fitted
state is data: :meth:`Combiner.get_state` gives a JSON-able dict and named numeric arrays, and
:meth:`Combiner.from_state` rebuilds an equal combiner from them, so saving, loading and
serving need no per-class code. :class:`WeightedAverage` is the ensemble that is a weight
vector; the combiners that only find weights derive from it.

Most combiners read the predictions and the labels only. Two class attributes say what
else a combiner reads: ``uses_features`` (``"none"``; ``"required"``: the original features
``X`` at fit and predict time, encoded by :mod:`~ensemblex.combiners.features`, as dynamic
selection and routing need; ``"optional"``: ``X`` passed on as given, as
:class:`AutoCombiner` does to its candidates) and ``needs_labels`` (False for label-free
combiners, which fit with ``y=None`` or with some labels missing).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from ensemblex.combiners.features import encode_features, fit_feature_encoding, n_rows
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

    A subclass with ``uses_features != "none"`` implements ``_fit(values, y, sample_weight,
    X)`` and ``_predict(values, X)`` instead: with ``"required"``, ``X`` is the encoded
    float array ``(n_samples, n_encoded)`` (the encoding is fitted here and kept in
    ``feature_encoding_``); with ``"optional"``, ``X`` is what the caller gave, or None. A
    subclass with ``needs_labels = False`` gets ``y=None`` when fit without labels, or, when
    some labels are given, codes with -1 (classification) or NaN (regression) where a label
    is missing.
    """

    _parameter_constraints: ClassVar[dict] = {"metric": [str, Metric]}

    #: What the combiner reads besides the predictions: "none", "optional" or "required".
    uses_features: ClassVar[str] = "none"
    #: False for a combiner that can be fit without labels.
    needs_labels: ClassVar[bool] = True

    metric: str | Metric = "auto"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        register(cls)

    def fit(self, P, y=None, X=None, sample_weight=None):
        """Fit on out-of-fold predictions.

        Parameters
        ----------
        P : Predictions or ndarray of shape (n_samples, n_members, n_outputs)
        y : array-like of shape (n_samples,), optional
            Targets; class labels (from ``P.classes``) for classification. Only a label-free
            combiner (``needs_labels = False``) may go without, or with some missing
            (None or NaN).
        X : DataFrame or array of shape (n_samples, n_features), optional
            The original features of the same rows; required where ``uses_features ==
            "required"``, ignored where it is ``"none"``.
        sample_weight : array-like of shape (n_samples,), optional
            Finite, non-negative, not all zero.

        Returns
        -------
        self
        """
        self._validate_params()
        self._fitted_on_names = isinstance(P, Predictions)
        P = as_predictions(P)
        y = self._check_labels(y, P)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                sample_weight, P.values[:, 0, 0], dtype=np.float64, ensure_non_negative=True
            )
            if sample_weight.sum() <= 0:
                raise ValueError("sample_weight must not be all zero")
        self.members_ = P.members
        self.task_ = P.task
        self.classes_ = P.classes
        self.n_outputs_ = P.n_outputs
        self.metric_ = get_metric(getattr(self, "metric", "auto"), P.task)
        if self.uses_features == "none":
            self._fit(P.values, y, sample_weight)
        else:
            if X is None and self.uses_features == "required":
                self._features_for(None, P.n_samples)  # raises: X is required
            self._check_feature_rows(X, P.n_samples, "fit")
            if self.uses_features == "required":
                self.feature_encoding_ = fit_feature_encoding(X)
                X = encode_features(self.feature_encoding_, X)
            self._fit(P.values, y, sample_weight, X)
        return self

    def _check_labels(self, y, P: Predictions):
        """Labels as ``_fit`` takes them: codes for classes, floats for regression."""
        if y is None:
            if self.needs_labels:
                raise ValueError(
                    f"y is required: {type(self).__name__} learns from labels; only label-free "
                    "combiners fit without them"
                )
            return None
        y = np.asarray(y)
        if y.shape != (P.n_samples,):
            raise ValueError(
                f"y must have shape ({P.n_samples},) to match P, however: y.shape={y.shape}"
            )
        missing = _missing(y)
        if missing.any() and self.needs_labels:
            raise ValueError(f"y is missing at row {int(np.argmax(missing))}")
        if is_classification(P.task):
            codes = np.full(len(y), -1, dtype=np.intp)
            codes[~missing] = encode_labels(y[~missing], P.classes)
            return codes
        values = np.full(len(y), np.nan)
        values[~missing] = y[~missing].astype(np.float64)
        if not np.all(np.isfinite(values[~missing])):
            raise ValueError("y holds NaN or inf; regression targets must be finite")
        return values

    @staticmethod
    def _check_feature_rows(X, n_samples: int, when: str) -> None:
        if X is None:
            return
        if n_rows(X) != n_samples:
            raise ValueError(
                f"X must have one row per sample of P ({n_samples}) at {when} time, however: "
                f"X has {n_rows(X)} rows"
            )

    def _features_for(self, X, n_samples: int):
        """``X`` as ``_predict`` takes it (encoded where the features are required)."""
        if self.uses_features == "required" and X is None:
            raise ValueError(
                f"X is required: {type(self).__name__} reads the original features of the "
                "rows it combines (pass X, or --features in the CLI)"
            )
        self._check_feature_rows(X, n_samples, "predict")
        if self.uses_features == "required":
            return encode_features(self.feature_encoding_, X)
        return X

    def predict(self, P, X=None) -> np.ndarray:
        """Combine members' predictions.

        Parameters
        ----------
        P : Predictions or ndarray of shape (n_samples, n_members, n_outputs)
            The same members, in the same order, as at fit time.
        X : DataFrame or array of shape (n_samples, n_features), optional
            The rows' original features, for a combiner that reads them.

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
        return self._combine(P.values, X)

    def _combine(self, values: np.ndarray, X=None) -> np.ndarray:
        """``_predict`` with the features as this combiner takes them (for combiners that
        call the combiners inside them on plain arrays)."""
        if self.uses_features == "none":
            return self._predict(values)
        return self._predict(values, self._features_for(X, len(values)))

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

    def predict_folds(self, folds, X=None) -> np.ndarray:
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
        X : DataFrame or array of shape (n_samples, n_features), optional
            The rows' original features, for a combiner that reads them.

        Returns
        -------
        ndarray of shape (n_samples, n_outputs)
        """
        folds = list(folds)
        if not folds:
            raise ValueError("folds must hold the predictions of at least one fold model")
        total = self.predict(folds[0], X=X)
        for fold in folds[1:]:
            total = total + self.predict(fold, X=X)
        return total / len(folds)

    def score(self, P, y, X=None, sample_weight=None) -> float:
        """The metric (``metric_``) of the combined prediction against ``y``."""
        pred = self.predict(P, X=X)
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


def _missing(y: np.ndarray) -> np.ndarray:
    """True where a label is missing (None, NaN, pandas NA)."""
    import pandas as pd

    return np.asarray(pd.isna(y), dtype=bool)


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
