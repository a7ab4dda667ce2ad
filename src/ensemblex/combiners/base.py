"""The combiner protocol: ``fit(P, y, sample_weight=None)`` then ``predict(P)``.

A combiner maps members' predictions ``(n_samples, n_members, n_outputs)`` to one prediction
``(n_samples, n_outputs)``: a regression value or probabilities over the classes.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from ensemblex.metrics import Metric, get_metric
from ensemblex.predictions import Predictions, as_predictions
from ensemblex.tasks import encode_labels, is_classification


class Combiner(BaseEstimator):
    """Base class: input checks shared by every combiner.

    Subclasses implement ``_fit(values, y, sample_weight)`` and ``_predict(values)`` on plain
    arrays; this class validates inputs and records ``members_``, ``task_``, ``classes_``,
    ``metric_`` and ``n_outputs_``.
    """

    metric: str | Metric = "auto"

    def fit(self, P, y, sample_weight=None):
        """Fit on out-of-fold predictions.

        Parameters
        ----------
        P : Predictions or ndarray of shape (n_samples, n_members, n_outputs)
        y : array-like of shape (n_samples,)
            Targets; class labels (from ``P.classes``) for classification.
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
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
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
            if (
                sample_weight.shape != y.shape
                or np.any(sample_weight < 0)
                or not np.all(np.isfinite(sample_weight))
                or sample_weight.sum() <= 0
            ):
                raise ValueError(
                    "sample_weight must be finite, non-negative, not all zero, of shape "
                    f"({P.n_samples},), however: shape={sample_weight.shape}"
                )
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
        if not hasattr(self, "members_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit first")
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

    def score(self, P, y, sample_weight=None) -> float:
        """The metric (``metric_``) of the combined prediction against ``y``."""
        pred = self.predict(P)
        if is_classification(self.task_):
            y = encode_labels(np.asarray(y), self.classes_)
        return self.metric_.score(y, pred, sample_weight)

    # subclasses -----------------------------------------------------
    def _fit(self, values: np.ndarray, y: np.ndarray, sample_weight) -> None:
        raise NotImplementedError

    def _predict(self, values: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def weighted_average(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Combine ``values`` (n, m, k) with member ``weights`` (m,) into (n, k)."""
    return np.einsum("nmk,m->nk", values, weights)


def member_losses(metric: Metric, values: np.ndarray, y, sample_weight=None) -> np.ndarray:
    """Each member's loss (lower is better), all members in one vectorised call; shape (m,)."""
    return metric.loss_batch(y, values.transpose(1, 0, 2), sample_weight)
