"""Deep ensembles of MLPs trained as one batched computation (scikit-learn style).

Each member has its own initialisation and its own batch order; training minimises the mean
of the members' losses (not the loss of their mean), with early stopping on the ensemble's
validation loss. ``predict_members`` returns the predictions array ``(n_samples, K,
n_outputs)`` that every combiner, metric and cascade reads. Saved as safetensors plus a JSON
config: loading never unpickles.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from torch.nn import functional as F

from ensemblex.deep.batched import BatchedMLP
from ensemblex.predictions import Predictions

FORMAT = "ensemblex-deep-ensemble"


class _DeepEnsemble(BaseEstimator):
    _classifier = False

    def __init__(
        self,
        n_members=5,
        hidden=(256, 256),
        dropout=0.0,
        lr=1e-3,
        weight_decay=1e-4,
        batch_size=256,
        max_epochs=200,
        patience=10,
        validation_fraction=0.1,
        random_state=0,
    ):
        self.n_members = n_members
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    # ------------------------------------------------------------ data
    def _inputs(self, X) -> torch.Tensor:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X must have shape (n_samples, {self.n_features_in_}), however: X.shape={X.shape}"
            )
        return torch.from_numpy((X - self.x_mean_) / self.x_scale_)

    def _targets(self, y: np.ndarray) -> torch.Tensor:
        if self._classifier:
            self.classes_, codes = np.unique(y, return_inverse=True)
            return torch.from_numpy(codes.astype(np.int64))
        y = np.asarray(y, dtype=np.float32)
        self.y_mean_, self.y_scale_ = float(y.mean()), float(y.std() or 1.0)
        return torch.from_numpy((y - self.y_mean_) / self.y_scale_)

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean of the members' losses: out (K, B, k), y (K, B) or (B,)."""
        if self._classifier:
            y = y.expand(out.shape[0], -1) if y.dim() == 1 else y
            return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        y = y.expand(out.shape[0], -1) if y.dim() == 1 else y
        return F.mse_loss(out[..., 0], y)

    def _ensemble_loss(self, out: torch.Tensor, y: torch.Tensor) -> float:
        """Validation loss of the ensemble's mean prediction."""
        if self._classifier:
            proba = torch.softmax(out, dim=-1).mean(dim=0)
            return float(F.nll_loss(torch.log(proba.clamp_min(1e-12)), y))
        return float(F.mse_loss(out[..., 0].mean(dim=0), y))

    # ------------------------------------------------------------ fit
    def fit(self, X, y):
        """Train all members together; returns self."""
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(
                f"X must be (n_samples, n_features) matching y, however: "
                f"X.shape={X.shape}, y.shape={y.shape}"
            )
        if not np.all(np.isfinite(X)):
            raise ValueError("X holds NaN or inf; impute or drop them first")
        torch.manual_seed(self.random_state)
        generator = torch.Generator().manual_seed(self.random_state)
        self.n_features_in_ = X.shape[1]
        self.x_mean_ = X.mean(axis=0)
        self.x_scale_ = np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0).astype(np.float32)
        targets = self._targets(y)
        stratify = targets.numpy() if self._classifier else None
        train_idx, val_idx = train_test_split(
            np.arange(len(y)),
            test_size=self.validation_fraction,
            random_state=self.random_state,
            stratify=stratify,
        )
        inputs = self._inputs(X)
        X_tr, y_tr = inputs[train_idx], targets[train_idx]
        X_val, y_val = inputs[val_idx], targets[val_idx]
        n_out = len(self.classes_) if self._classifier else 1
        k = int(self.n_members)
        self.model_ = BatchedMLP(
            k, X.shape[1], n_out, tuple(self.hidden), self.dropout, seed=self.random_state
        )
        optimizer = torch.optim.AdamW(
            self.model_.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        batch = min(int(self.batch_size), len(X_tr))
        best, best_state, waited = np.inf, None, 0
        self.history_ = []
        for _epoch in range(int(self.max_epochs)):
            self.model_.train()
            # each member draws its own batch order
            order = torch.argsort(torch.rand(k, len(X_tr), generator=generator), dim=1)
            for start in range(0, len(X_tr) - batch + 1, batch):
                idx = order[:, start : start + batch]  # (K, B)
                optimizer.zero_grad()
                loss = self._loss(self.model_(X_tr[idx]), y_tr[idx])
                loss.backward()
                optimizer.step()
            self.model_.eval()
            with torch.no_grad():
                val = self._ensemble_loss(self.model_(X_val), y_val)
            self.history_.append(val)
            if val < best - 1e-6:
                best, waited = val, 0
                best_state = {
                    name: t.detach().clone() for name, t in self.model_.state_dict().items()
                }
            else:
                waited += 1
                if waited >= self.patience:
                    break
        self.model_.load_state_dict(best_state)
        self.best_validation_loss_ = best
        return self

    # ------------------------------------------------------------ predict
    def predict_members(self, X) -> np.ndarray:
        """Every member's prediction: ``(n_samples, n_members, n_outputs)``."""
        if not hasattr(self, "model_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit first")
        self.model_.eval()
        with torch.no_grad():
            out = self.model_(self._inputs(X))  # (K, n, k)
        if self._classifier:
            return torch.softmax(out, dim=-1).permute(1, 0, 2).double().numpy()
        return (out.permute(1, 0, 2).double().numpy() * self.y_scale_) + self.y_mean_

    def member_predictions(self, X) -> Predictions:
        """The members as a :class:`Predictions` for combiners, metrics and cascades."""
        values = self.predict_members(X)
        names = [f"mlp{j}" for j in range(values.shape[1])]
        if not self._classifier:
            return Predictions(values, names, "regression")
        task = "binary" if len(self.classes_) == 2 else "multiclass"
        return Predictions(values, names, task, classes=self.classes_)

    # ------------------------------------------------------------ save / load
    def save(self, path) -> Path:
        """Save as ``model.safetensors`` and ``config.json`` in the folder ``path``."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.contiguous() for k, v in self.model_.state_dict().items()},
            str(path / "model.safetensors"),
        )
        config = {
            "format": FORMAT,
            "estimator": type(self).__name__,
            "params": {
                k: list(v) if isinstance(v, tuple) else v for k, v in self.get_params().items()
            },
            "n_features_in": self.n_features_in_,
            "x_mean": self.x_mean_.tolist(),
            "x_scale": self.x_scale_.tolist(),
            "classes": self.classes_.tolist() if self._classifier else None,
            "y_mean": getattr(self, "y_mean_", None),
            "y_scale": getattr(self, "y_scale_", None),
        }
        (path / "config.json").write_text(json.dumps(config, indent=2))
        return path

    @classmethod
    def load(cls, path):
        """Load a folder written by :meth:`save` (tensors only: nothing is unpickled)."""
        from safetensors.torch import load_file

        path = Path(path)
        config = json.loads((path / "config.json").read_text())
        if config.get("format") != FORMAT or config.get("estimator") != cls.__name__:
            raise ValueError(f"{path}: not a saved {cls.__name__}")
        params = dict(config["params"])
        params["hidden"] = tuple(params["hidden"])
        self = cls(**params)
        self.n_features_in_ = config["n_features_in"]
        self.x_mean_ = np.asarray(config["x_mean"], dtype=np.float32)
        self.x_scale_ = np.asarray(config["x_scale"], dtype=np.float32)
        n_out = 1
        if self._classifier:
            self.classes_ = np.asarray(config["classes"])
            n_out = len(self.classes_)
        else:
            self.y_mean_, self.y_scale_ = config["y_mean"], config["y_scale"]
        self.model_ = BatchedMLP(
            int(self.n_members), self.n_features_in_, n_out, tuple(self.hidden), self.dropout
        )
        self.model_.load_state_dict(load_file(str(path / "model.safetensors")))
        return self


class DeepEnsembleClassifier(ClassifierMixin, _DeepEnsemble):
    """A deep ensemble of MLP classifiers (see the module docstring).

    Parameters
    ----------
    n_members : int, default 5
    hidden : tuple of int, default (256, 256)
    dropout, lr, weight_decay, batch_size, max_epochs, patience, validation_fraction
        Training settings; early stopping watches the ensemble's validation log-loss.
    random_state : int, default 0
    """

    _classifier = True

    def predict_proba(self, X) -> np.ndarray:
        """The members' mean probabilities, (n_samples, n_classes)."""
        return self.predict_members(X).mean(axis=1)

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class DeepEnsembleRegressor(RegressorMixin, _DeepEnsemble):
    """A deep ensemble of MLP regressors (see :class:`DeepEnsembleClassifier`)."""

    _classifier = False

    def predict(self, X) -> np.ndarray:
        """The members' mean prediction, (n_samples,)."""
        return self.predict_members(X)[:, :, 0].mean(axis=1)
