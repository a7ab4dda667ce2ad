"""TabM (Gorishniy et al., 2024) through the ``tabm`` package, with its k heads as k members.

One TabM network imitates k MLPs that share most weights (BatchEnsemble-style adapters). The
package builds the network; this module adds the scikit-learn contract, the data handling of
the paper (quantile-normalised continuous features, binary features one-hot, optional
piecewise-linear embeddings) and a training loop with early stopping on the mean of the heads.

``predict_members`` returns every head: ``(n_samples, k, n_outputs)``, so combiners such as
:class:`~ensemblex.GreedySelection` can prune heads. Saved as one safetensors file whose
header carries the JSON config (see :mod:`ensemblex.deep.serialization`): nothing unpickled.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from sklearn.preprocessing import QuantileTransformer

from ensemblex.deep.base import DeepMembersBase, MeanClassifierMixin, MeanRegressorMixin
from ensemblex.deep.training import (
    encode_targets,
    mean_prediction_loss,
    member_loss,
    train,
    validation_split,
)

_ARCH_TYPES = ("tabm", "tabm-mini", "tabm-packed")
_EMBEDDINGS = (None, "piecewise")
# A bound on piecewise-embedding weights (d_embedding x bins), far above any sane setting, so
# that a config read from a file cannot make load() allocate without limit.
_MAX_EMBEDDING_WEIGHTS = 50_000_000


# ---------------------------------------------------------------- feature handling
class _Features:
    """Split columns into continuous (quantile-normalised, as in the paper) and two-valued
    ones (one-hot inside TabM). Fitted on the training rows only."""

    def __init__(self, X: np.ndarray, quantile: bool, random_state: int):
        n_unique = np.array([len(np.unique(col)) for col in X.T])
        self.continuous = np.flatnonzero(n_unique > 2)
        self.binary = np.flatnonzero(n_unique <= 2)
        # a two-valued column becomes the code of "above the midpoint of its two values"
        self.midpoint = (X[:, self.binary].min(axis=0) + X[:, self.binary].max(axis=0)) / 2
        self.quantiles = None
        if quantile and len(self.continuous):
            qt = QuantileTransformer(
                n_quantiles=max(min(len(X) // 30, 1000), 10),
                output_distribution="normal",
                subsample=10**9,
                random_state=random_state,
            ).fit(X[:, self.continuous])
            self.quantiles = qt
        cont = self.transform_continuous(X)
        self.mean = cont.mean(axis=0)
        self.scale = np.where(cont.std(axis=0) > 0, cont.std(axis=0), 1.0)

    def transform_continuous(self, X: np.ndarray) -> np.ndarray:
        cont = X[:, self.continuous]
        if self.quantiles is not None:
            cont = self.quantiles.transform(cont)
        return cont

    def __call__(self, X: np.ndarray) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        x_num = x_cat = None
        if len(self.continuous):
            cont = (self.transform_continuous(X) - self.mean) / self.scale
            x_num = torch.as_tensor(cont, dtype=torch.float32)
        if len(self.binary):
            x_cat = torch.as_tensor(X[:, self.binary] > self.midpoint, dtype=torch.long)
        return x_num, x_cat

    def state(self) -> dict[str, np.ndarray]:
        state = {
            "continuous": self.continuous,
            "binary": self.binary,
            "midpoint": self.midpoint,
            "mean": self.mean,
            "scale": self.scale,
        }
        if self.quantiles is not None:
            state["quantiles"] = self.quantiles.quantiles_
            state["references"] = self.quantiles.references_
        return state

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> _Features:
        self = cls.__new__(cls)
        self.continuous = state["continuous"].astype(np.int64)
        self.binary = state["binary"].astype(np.int64)
        self.midpoint, self.mean, self.scale = state["midpoint"], state["mean"], state["scale"]
        self.quantiles = None
        if "quantiles" in state:
            # a fitted QuantileTransformer is its quantiles and references
            qt = QuantileTransformer(output_distribution="normal")
            qt.quantiles_, qt.references_ = state["quantiles"], state["references"]
            qt.n_quantiles_ = len(qt.references_)
            qt.n_features_in_ = qt.quantiles_.shape[1]
            self.quantiles = qt
        return self


# ---------------------------------------------------------------- estimator
class _TabMBase(DeepMembersBase):
    _member_prefix = "head"

    def __init__(
        self,
        k: int = 32,
        n_blocks: int = 3,
        d_block: int = 512,
        dropout: float = 0.1,
        arch_type: str = "tabm",
        num_embeddings: str | None = None,
        n_bins: int = 48,
        d_embedding: int = 16,
        lr: float = 2e-3,
        weight_decay: float = 3e-4,
        batch_size: int = 256,
        max_epochs: int = 100,
        patience: int = 16,
        max_seconds: float | None = None,
        validation_fraction: float = 0.1,
        quantile_transform: bool = True,
        n_threads: int | None = None,
        random_state: int = 0,
    ):
        self.k = k
        self.n_blocks = n_blocks
        self.d_block = d_block
        self.dropout = dropout
        self.arch_type = arch_type
        self.num_embeddings = num_embeddings
        self.n_bins = n_bins
        self.d_embedding = d_embedding
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.max_seconds = max_seconds
        self.validation_fraction = validation_fraction
        self.quantile_transform = quantile_transform
        self.n_threads = n_threads
        self.random_state = random_state

    @property
    def ensemble_size(self) -> int:
        """How many members (heads) :meth:`predict_members` returns."""
        return int(self.k)

    # ------------------------------------------------------------ network
    def _build(self, n_out: int, bins: list[torch.Tensor] | None) -> torch.nn.Module:
        import tabm
        from rtdl_num_embeddings import PiecewiseLinearEmbeddings

        n_num = len(self.features_.continuous)
        embeddings = None
        if bins is not None:
            size = int(self.d_embedding) * sum(len(b) for b in bins)
            if size > _MAX_EMBEDDING_WEIGHTS:
                raise ValueError(
                    f"piecewise embeddings of {size} weights exceed {_MAX_EMBEDDING_WEIGHTS}, "
                    f"however: d_embedding={self.d_embedding}"
                )
            # its bins are read (.item()) while building: real tensors even while load()
            # builds a shape-only (meta) copy of the rest of the network
            with torch.device("cpu"):
                embeddings = PiecewiseLinearEmbeddings(
                    bins, int(self.d_embedding), activation=False, version="B"
                )
        return tabm.TabM.make(
            n_num_features=n_num,
            cat_cardinalities=[2] * len(self.features_.binary),
            d_out=n_out,
            num_embeddings=embeddings,
            k=int(self.k),
            n_blocks=int(self.n_blocks),
            d_block=int(self.d_block),
            dropout=float(self.dropout),
            arch_type=self.arch_type,
        )

    def _check_params(self) -> None:
        if self.arch_type not in _ARCH_TYPES:
            raise ValueError(
                f"arch_type must be one of {_ARCH_TYPES}, however: arch_type={self.arch_type!r}"
            )
        if self.num_embeddings not in _EMBEDDINGS:
            raise ValueError(
                f"num_embeddings must be None or 'piecewise', "
                f"however: num_embeddings={self.num_embeddings!r}"
            )
        for name in ("k", "n_blocks", "d_block", "batch_size", "max_epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, however: {name}={getattr(self, name)}")

    def _check_X(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features), however: X.shape={X.shape}")
        if hasattr(self, "n_features_in_") and X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X must have {self.n_features_in_} features, however: X.shape={X.shape}"
            )
        if not np.all(np.isfinite(X)):
            raise ValueError("X holds NaN or inf; impute or drop them first")
        return X

    # ------------------------------------------------------------ forward
    def _forward_chunks(self, x_num, x_cat, rows: int = 4096) -> torch.Tensor:
        n = len(x_num if x_num is not None else x_cat)
        parts = []
        for s in range(0, n, rows):
            parts.append(
                self.model_(
                    None if x_num is None else x_num[s : s + rows],
                    None if x_cat is None else x_cat[s : s + rows],
                )
            )
        return torch.cat(parts)

    # ------------------------------------------------------------ fit
    def _fit(self, X, y) -> None:
        self._check_params()
        X = self._check_X(X)
        y = np.asarray(y)
        if len(X) != len(y):
            raise ValueError(f"X and y differ in length: {len(X)} rows and {len(y)} labels")
        start = time.perf_counter()
        torch.manual_seed(self.random_state)  # DeepMembersBase.fit forks the global generator
        self.n_features_in_ = X.shape[1]
        targets = encode_targets(y, classifier=self._classifier)
        if self._classifier:
            self.classes_ = targets.classes
        else:
            self.y_mean_, self.y_scale_ = targets.mean, targets.scale
        train_idx, val_idx = validation_split(targets, self.validation_fraction, self.random_state)
        self.validation_rows_ = np.sort(val_idx)
        self.features_ = _Features(X[train_idx], self.quantile_transform, self.random_state)
        x_num, x_cat = self.features_(X)
        bins = None
        if self.num_embeddings == "piecewise" and x_num is not None:
            from rtdl_num_embeddings import compute_bins

            n_bins = max(2, min(int(self.n_bins), len(train_idx) - 1))
            bins = compute_bins(x_num[train_idx], n_bins=n_bins)
        self.bins_ = None if bins is None else [b.numpy() for b in bins]
        # TabM initialises from the global generator seeded above; training continues it
        self.model_ = self._build(len(self.classes_) if self._classifier else 1, bins)

        def rows(t, idx):
            return None if t is None else t[idx]

        tr, y = torch.as_tensor(train_idx), targets.values
        kind = {"classifier": self._classifier, "member_axis": 1}

        def batch_loss(positions: torch.Tensor) -> torch.Tensor:
            idx = tr[positions]
            return member_loss(self.model_(rows(x_num, idx), rows(x_cat, idx)), y[idx], **kind)

        val_num, val_cat, y_val = rows(x_num, val_idx), rows(x_cat, val_idx), y[val_idx]

        def validation_loss() -> float:
            return mean_prediction_loss(self._forward_chunks(val_num, val_cat), y_val, **kind)

        seconds_left = None
        if self.max_seconds is not None:
            seconds_left = self.max_seconds - (time.perf_counter() - start)
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
            validation_loss=validation_loss,
            patience=self.patience,
            max_seconds=seconds_left,
        )
        self.history_ = result.val_history
        self.best_validation_loss_ = result.best_loss
        self.n_epochs_ = result.n_epochs

    # ------------------------------------------------------------ predict
    def predict_members(self, X) -> np.ndarray:
        """Every head's prediction: ``(n_samples, k, n_outputs)`` (probabilities for
        classifiers, values in the target's units for regressors)."""
        if not hasattr(self, "model_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit first")
        X = self._check_X(X)
        self.model_.eval()
        with torch.no_grad():
            out = self._forward_chunks(*self.features_(X))
        if self._classifier:
            # softmax in float64 so that each row sums to one to numpy's tolerance
            return torch.softmax(out.double(), dim=-1).numpy()
        return out.double().numpy() * self.y_scale_ + self.y_mean_

    # ------------------------------------------------------------ serialization hooks
    def _fitted_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        arrays = {f"features.{k}": np.asarray(v) for k, v in self.features_.state().items()}
        for j, b in enumerate(self.bins_ or []):
            arrays[f"bins.{j}"] = b
        fitted = {
            "n_features_in": self.n_features_in_,
            "n_bins_arrays": len(self.bins_ or []),
            "classes": self.classes_.tolist() if self._classifier else None,
            "y_mean": getattr(self, "y_mean_", None),
            "y_scale": getattr(self, "y_scale_", None),
        }
        return fitted, arrays

    def _restore(self, fitted: dict, arrays: dict[str, np.ndarray]) -> None:
        self.n_features_in_ = fitted["n_features_in"]
        features = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("features.")}
        self.features_ = _Features.from_state(features)
        self.bins_ = [arrays[f"bins.{j}"] for j in range(fitted["n_bins_arrays"])] or None
        n_out = 1
        if self._classifier:
            self.classes_ = np.asarray(fitted["classes"])
            n_out = len(self.classes_)
        else:
            self.y_mean_, self.y_scale_ = fitted["y_mean"], fitted["y_scale"]
        bins = [torch.as_tensor(b, device="cpu") for b in self.bins_ or []] or None
        self.model_ = self._build(n_out, bins)


class TabMClassifier(MeanClassifierMixin, _TabMBase):
    """TabM classifier: k heads trained together, predicting their mean probabilities.

    Parameters
    ----------
    k : int, default 32
        Number of heads (implicit MLPs); each is a member of :meth:`predict_members`.
    n_blocks, d_block, dropout, arch_type
        The backbone, as in ``tabm.TabM.make`` (``"tabm"``, ``"tabm-mini"`` or
        ``"tabm-packed"``).
    num_embeddings : {None, "piecewise"}, default None
        ``"piecewise"``: piecewise-linear embeddings of the continuous features (TabM†),
        with ``n_bins`` quantile bins and ``d_embedding`` dimensions.
    lr, weight_decay, batch_size, max_epochs, patience, validation_fraction
        AdamW training; early stopping watches the mean of the heads on the validation rows
        (their indices are kept in ``validation_rows_``: a fair place to prune heads).
    max_seconds : float, optional
        Stop after the epoch that crosses this training time.
    quantile_transform : bool, default True
        Map continuous features through a normal quantile transform (the paper's default).
    n_threads : int, optional
        Torch threads during ``fit`` (cross-fitting workers use one each).
    random_state : int, default 0

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> model = TabMClassifier(k=4, d_block=32, n_blocks=2, max_epochs=3).fit(X, y)
    >>> model.predict_members(X[:5]).shape
    (5, 4, 2)
    """


class TabMRegressor(MeanRegressorMixin, _TabMBase):
    """TabM regressor: k heads trained together on the standardised target, predicting
    their mean (parameters as :class:`TabMClassifier`)."""
