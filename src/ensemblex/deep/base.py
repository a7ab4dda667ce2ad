"""What every deep estimator shares: members out, their mean as the prediction, threads.

A deep estimator defines ``predict_members(X) -> (n_samples, n_members, n_outputs)``
(probabilities for classifiers), ``_fit(X, y)`` and the serialization hooks of
:class:`~ensemblex.deep.serialization.TorchMembersMixin`; this module turns that into the
scikit-learn contract.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from ensemblex.deep.serialization import TorchMembersMixin
from ensemblex.predictions import Predictions


def training_arrays(X, y) -> tuple[np.ndarray, np.ndarray]:
    """``X`` as float32 ``(n_samples, n_features)`` and ``y`` as an array, checked: matching
    lengths, every feature finite."""
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(
            f"X must be (n_samples, n_features) matching y, however: "
            f"X.shape={X.shape}, y.shape={y.shape}"
        )
    if not np.all(np.isfinite(X)):
        raise ValueError("X holds NaN or inf; impute or drop them first")
    return X, y


class DeepMembersBase(TorchMembersMixin, BaseEstimator):
    """Base of the deep estimators: ``fit`` with ``n_threads``, ``member_predictions``."""

    _classifier = False
    _member_prefix = "member"

    def fit(self, X, y):
        """Train every member together; returns self."""
        threads = torch.get_num_threads()
        if self.n_threads is not None:
            torch.set_num_threads(int(self.n_threads))
        try:
            # seeded from random_state without touching the caller's global generator
            with torch.random.fork_rng(devices=[]):
                self._fit(X, y)
        finally:
            torch.set_num_threads(threads)
        return self

    def _targets_and_split(self, X: np.ndarray, y: np.ndarray):
        """Encode ``y`` (setting ``classes_``, or ``y_mean_`` and ``y_scale_``), hold out
        ``validation_fraction`` of the training rows (``validation_rows_``) and record
        ``n_features_in_``; returns ``(targets, train_idx, val_idx)``."""
        from ensemblex.deep.training import encode_targets, validation_split

        targets = encode_targets(y, classifier=self._classifier)
        if self._classifier:
            self.classes_ = targets.classes
        else:
            self.y_mean_, self.y_scale_ = targets.mean, targets.scale
        train_idx, val_idx = validation_split(targets, self.validation_fraction, self.random_state)
        self.validation_rows_ = np.sort(val_idx)
        self.n_features_in_ = X.shape[1]
        return targets, train_idx, val_idx

    def member_predictions(self, X) -> Predictions:
        """The members as a :class:`Predictions` for combiners, metrics and cascades."""
        values = self.predict_members(X)
        names = [f"{self._member_prefix}{j}" for j in range(values.shape[1])]
        if not self._classifier:  # a Gaussian head names its outputs ("mean", "var")
            outputs = getattr(self, "member_outputs", None)
            return Predictions(values, names, "regression", outputs=outputs)
        task = "binary" if len(self.classes_) == 2 else "multiclass"
        return Predictions(values, names, task, classes=self.classes_)


class MeanClassifierMixin(ClassifierMixin):
    """Predicts the members' mean probabilities."""

    _classifier = True

    def predict_proba(self, X) -> np.ndarray:
        """The members' mean probabilities, ``(n_samples, n_classes)``."""
        return self.predict_members(X).mean(axis=1)

    def predict(self, X) -> np.ndarray:
        """The class of highest mean probability, ``(n_samples,)``."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class MeanRegressorMixin(RegressorMixin):
    """Predicts the members' mean."""

    _classifier = False

    def predict(self, X) -> np.ndarray:
        """The members' mean prediction, ``(n_samples,)``."""
        return self.predict_members(X)[:, :, 0].mean(axis=1)
