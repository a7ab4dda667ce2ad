"""Deep ensembles of MLPs or small CNNs trained as one batched computation (scikit-learn style).

Each member has its own initialisation and its own batch order; training minimises the mean
of the members' losses (not the loss of their mean), with early stopping on the ensemble's
validation loss. ``predict_members`` returns the predictions array ``(n_samples, K,
n_outputs)`` that every combiner, metric and cascade reads. Saved as one safetensors file
with a JSON config in its header (:mod:`ensemblex.deep.serialization`): nothing unpickled.

``architecture="cnn"`` swaps the MLPs for :class:`~ensemblex.deep.cnn.BatchedCNN` members; X
stays a 2-D array of flattened images, reshaped inside to ``image_shape`` ``(C, H, W)``.
"""

from __future__ import annotations

import numpy as np
import torch

from ensemblex.deep.base import (
    DeepMembersBase,
    MeanClassifierMixin,
    MeanRegressorMixin,
    training_arrays,
)
from ensemblex.deep.batched import BatchedMLP
from ensemblex.deep.cnn import BatchedCNN
from ensemblex.deep.gaussian import (
    check_distribution,
    gaussian_member_nll,
    gaussian_mixture_nll,
    gaussian_moments,
)
from ensemblex.deep.training import (
    mean_prediction_loss,
    member_loss,
    train,
)
from ensemblex.predictions import GAUSSIAN_OUTPUTS

ARCHITECTURES = ("mlp", "cnn")
# rows per forward pass when predicting with the CNN: its activations are
# (rows, K * channels, H, W), which for all of MNIST at once would take gigabytes
_CNN_CHUNK = 512


class _DeepEnsemble(DeepMembersBase):
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
        architecture="mlp",
        image_shape=(1, 28, 28),
        channels=(16, 32),
        n_threads=None,
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
        self.architecture = architecture
        self.image_shape = image_shape
        self.channels = channels
        self.n_threads = n_threads

    @property
    def _member_prefix(self) -> str:  # members are named mlp0, mlp1, ... or cnn0, ...
        return self.architecture

    @property
    def ensemble_size(self) -> int:
        """How many members :meth:`predict_members` returns."""
        return int(self.n_members)

    # ------------------------------------------------------------ data
    def _inputs(self, X) -> torch.Tensor:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X must have shape (n_samples, {self.n_features_in_}), however: X.shape={X.shape}"
            )
        inputs = torch.from_numpy((X - self.x_mean_) / self.x_scale_)
        if self.architecture == "cnn":
            return inputs.view(-1, *self.image_shape)  # (n, C, H, W)
        return inputs

    def _check_architecture(self, n_features: int) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be 'mlp' or 'cnn', however: architecture={self.architecture!r}"
            )
        if self.architecture != "cnn":
            return
        shape = self.image_shape
        if (
            not isinstance(shape, (tuple, list))
            or len(shape) != 3
            or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in shape)
        ):
            raise ValueError(
                f"image_shape must be (channels, height, width) of positive ints, "
                f"however: image_shape={shape!r}"
            )
        if int(np.prod(shape)) != n_features:
            raise ValueError(
                f"image_shape must hold n_features values (product {n_features}), however: "
                f"image_shape={tuple(shape)} holds {int(np.prod(shape))}"
            )
        channels = self.channels
        if (
            not isinstance(channels, (tuple, list))
            or len(channels) != 2
            or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in channels)
        ):
            raise ValueError(
                f"channels must be two positive ints (filters of the two convolutions), "
                f"however: channels={channels!r}"
            )
        if min(shape[1:]) < 4:
            raise ValueError(
                f"image_shape needs height and width >= 4 (the CNN pools twice), however: "
                f"image_shape={tuple(shape)}"
            )

    def _scaling(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature ``(mean, scale)`` arrays, ``(n_features,)`` each.

        The MLP standardises every feature. The CNN uses one mean/std per image channel
        (broadcast over its pixels): per-pixel scaling would distort the spatial structure that
        convolutions share across positions, and would blow up near-constant border pixels.
        """
        if self.architecture == "cnn":
            channels = X.reshape(len(X), self.image_shape[0], -1)
            mean = channels.mean(axis=(0, 2))
            std = channels.std(axis=(0, 2))
            scale = np.where(std > 0, std, 1.0)
            pixels = channels.shape[2]
            return np.repeat(mean, pixels).astype(np.float32), np.repeat(scale, pixels).astype(
                np.float32
            )
        std = X.std(axis=0)
        return X.mean(axis=0), np.where(std > 0, std, 1.0).astype(np.float32)

    def _build(self, n_out: int, seed: int = 0) -> torch.nn.Module:
        k = int(self.n_members)
        if self.architecture == "cnn":
            c, h, w = (int(v) for v in self.image_shape)
            return BatchedCNN(k, c, (h, w), n_out, seed, tuple(self.channels), self.dropout)
        return BatchedMLP(k, self.n_features_in_, n_out, tuple(self.hidden), self.dropout, seed)

    def _forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """All members' raw outputs ``(K, n, n_out)`` for a shared input, without gradients."""
        self.model_.eval()
        with torch.no_grad():
            if self.architecture != "cnn":
                return self.model_(inputs)
            return torch.cat([self.model_(part) for part in inputs.split(_CNN_CHUNK)], dim=1)

    # ------------------------------------------------------------ fit
    def _fit(self, X, y):
        X, y = training_arrays(X, y)
        self._check_architecture(X.shape[1])
        for name in ("n_members", "batch_size", "max_epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, however: {name}={getattr(self, name)}")
        targets, train_idx, val_idx = self._targets_and_split(X, y)
        self.x_mean_, self.x_scale_ = self._scaling(X)
        inputs = self._inputs(X)
        X_tr, y_tr = inputs[train_idx], targets.values[train_idx]
        X_val, y_val = inputs[val_idx], targets.values[val_idx]
        torch.manual_seed(self.random_state)  # DeepMembersBase.fit forks the global generator
        self._check_head()
        self.model_ = self._build(self._n_out(), self.random_state)

        def batch_loss(rows: torch.Tensor) -> torch.Tensor:  # rows (K, B): a batch per member
            return self._member_loss(self.model_(X_tr[rows]), y_tr[rows])

        result = train(
            self.model_,
            batch_loss,
            len(train_idx),
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            random_state=self.random_state,
            seed_global=False,
            n_members=int(self.n_members),
            validation_loss=lambda: self._validation_loss(self._forward(X_val), y_val),
            patience=self.patience,
        )
        self.history_ = result.val_history
        self.best_validation_loss_ = result.best_loss
        return self

    # the head: what the networks output and how they learn it (a Gaussian for the regressor
    # with distribution="gaussian", DeepEnsembleRegressor overrides these)
    def _check_head(self) -> None:
        pass

    def _n_out(self) -> int:
        return len(self.classes_) if self._classifier else 1

    def _member_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return member_loss(out, y, classifier=self._classifier)

    def _validation_loss(self, out: torch.Tensor, y: torch.Tensor) -> float:
        return mean_prediction_loss(out, y, classifier=self._classifier)

    # ------------------------------------------------------------ predict
    def predict_members(self, X) -> np.ndarray:
        """Every member's prediction: ``(n_samples, n_members, n_outputs)``."""
        if not hasattr(self, "model_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit first")
        out = self._forward(self._inputs(X))  # (K, n, k)
        if self._classifier:
            # softmax in float64 so that each row sums to one to numpy's tolerance
            return torch.softmax(out.double(), dim=-1).permute(1, 0, 2).numpy()
        return (out.permute(1, 0, 2).double().numpy() * self.y_scale_) + self.y_mean_

    # ------------------------------------------------------------ serialization hooks
    def _fitted_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        fitted = {
            "n_features_in": self.n_features_in_,
            "classes": self.classes_.tolist() if self._classifier else None,
            "y_mean": getattr(self, "y_mean_", None),
            "y_scale": getattr(self, "y_scale_", None),
        }
        return fitted, {"x_mean": self.x_mean_, "x_scale": self.x_scale_}

    def _restore(self, fitted: dict, arrays: dict[str, np.ndarray]) -> None:
        self._check_architecture(fitted["n_features_in"])
        self.n_features_in_ = fitted["n_features_in"]
        self.x_mean_ = arrays["x_mean"].astype(np.float32)
        self.x_scale_ = arrays["x_scale"].astype(np.float32)
        if self._classifier:
            self.classes_ = np.asarray(fitted["classes"])
        else:
            self.y_mean_, self.y_scale_ = fitted["y_mean"], fitted["y_scale"]
        self._check_head()
        self.model_ = self._build(self._n_out())


class DeepEnsembleClassifier(MeanClassifierMixin, _DeepEnsemble):
    """A deep ensemble of MLP or CNN classifiers (see the module docstring).

    Parameters
    ----------
    n_members : int, default 5
    hidden : tuple of int, default (256, 256)
        Hidden layer widths of each MLP (``architecture="mlp"``).
    dropout, lr, weight_decay, batch_size, max_epochs, patience, validation_fraction
        Training settings; early stopping watches the ensemble's validation log-loss.
    random_state : int, default 0
    architecture : {"mlp", "cnn"}, default "mlp"
        ``"cnn"``: each member is a small CNN (:class:`~ensemblex.deep.cnn.SmallCNN`); X is
        still ``(n_samples, C * H * W)`` flattened images, scaled by one mean/std per channel.
    image_shape : (int, int, int), default (1, 28, 28)
        ``(C, H, W)`` of the images, CNN only; its product must equal ``n_features``.
    channels : (int, int), default (16, 32)
        Filters of the CNN's two convolutions, CNN only.
    n_threads : int, optional
        Torch threads during ``fit`` (cross-fitting workers use one each).

    Attributes
    ----------
    validation_rows_ : ndarray
        Rows held out for early stopping (a fair place to fit a combiner over the members).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> model = DeepEnsembleClassifier(
    ...     n_members=2, architecture="cnn", image_shape=(1, 8, 8), channels=(4, 8), max_epochs=1
    ... ).fit(X[:300], y[:300])
    >>> model.predict_members(X[:3]).shape
    (3, 2, 10)
    """


class DeepEnsembleRegressor(MeanRegressorMixin, _DeepEnsemble):
    """A deep ensemble of MLP or CNN regressors (see :class:`DeepEnsembleClassifier`).

    Parameters
    ----------
    n_members, hidden, dropout, lr, weight_decay, batch_size, max_epochs, patience, \
validation_fraction, random_state, architecture, image_shape, channels, n_threads
        As :class:`DeepEnsembleClassifier`'s; early stopping watches the ensemble's
        validation MSE, or its mixture NLL with ``distribution="gaussian"``.
    distribution : {None, "gaussian"}, default None
        ``"gaussian"``: each member predicts a mean and a variance and is trained by Gaussian
        negative log-likelihood (:mod:`ensemblex.deep.gaussian`); :meth:`predict_members`
        then returns ``(n_samples, n_members, 2)``, outputs ``("mean", "var")``.
    min_variance : float, default 1e-4
        Floor of each member's variance, as a share of y's variance (Gaussian only).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3)); y = X[:, 0] + rng.normal(size=200)
    >>> model = DeepEnsembleRegressor(n_members=2, hidden=(8,), max_epochs=2,
    ...                               distribution="gaussian").fit(X, y)
    >>> model.predict_members(X[:4]).shape, model.member_outputs
    ((4, 2, 2), ('mean', 'var'))
    """

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
        architecture="mlp",
        image_shape=(1, 28, 28),
        channels=(16, 32),
        n_threads=None,
        distribution=None,
        min_variance=1e-4,
    ):
        super().__init__(
            n_members=n_members,
            hidden=hidden,
            dropout=dropout,
            lr=lr,
            weight_decay=weight_decay,
            batch_size=batch_size,
            max_epochs=max_epochs,
            patience=patience,
            validation_fraction=validation_fraction,
            random_state=random_state,
            architecture=architecture,
            image_shape=image_shape,
            channels=channels,
            n_threads=n_threads,
        )
        self.distribution = distribution
        self.min_variance = min_variance

    @property
    def member_outputs(self) -> tuple[str, ...] | None:
        """``("mean", "var")`` with ``distribution="gaussian"``, else None (one value)."""
        return GAUSSIAN_OUTPUTS if self.distribution == "gaussian" else None

    def _check_head(self) -> None:
        check_distribution(self.distribution, self.min_variance)

    def _n_out(self) -> int:
        return 2 if self.distribution == "gaussian" else 1

    def _member_loss(self, out, y):
        if self.distribution == "gaussian":
            return gaussian_member_nll(out, y, self.min_variance)
        return super()._member_loss(out, y)

    def _validation_loss(self, out, y):
        if self.distribution == "gaussian":
            return gaussian_mixture_nll(out, y, self.min_variance)
        return super()._validation_loss(out, y)

    def predict_members(self, X) -> np.ndarray:
        """Every member's prediction: ``(n_samples, n_members, 1)`` values, or
        ``(n_samples, n_members, 2)`` means and variances with ``distribution="gaussian"``."""
        if self.distribution != "gaussian":
            return super().predict_members(X)
        if not hasattr(self, "model_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit first")
        out = self._forward(self._inputs(X))  # (K, n, 2)
        return gaussian_moments(out, self.min_variance, self.y_mean_, self.y_scale_)

    def predict_distribution(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of the members' equal-weight mixture, ``(n_samples,)`` each
        (``distribution="gaussian"`` only)."""
        if self.distribution != "gaussian":
            raise ValueError(
                "predict_distribution needs distribution='gaussian', however: "
                f"distribution={self.distribution!r}"
            )
        moments = self.predict_members(X)
        mean = moments[:, :, 0].mean(axis=1)
        var = (moments[:, :, 1] + moments[:, :, 0] ** 2).mean(axis=1) - mean**2
        return mean, np.maximum(var, 0.0)
