"""Feature-level fusion of a deep ensemble: a learned head over the members' embeddings.

Instead of averaging K networks' outputs, :class:`FusionClassifier` / :class:`FusionRegressor`
train a :class:`~ensemblex.deep.ensemble.DeepEnsembleClassifier` (or regressor) exactly as it
trains alone, freeze its K MLPs, and fit a small head (a linear layer, or an MLP, with dropout
and weight decay) on the concatenation of every member's penultimate embedding (its last
hidden layer's activations). ``head_inputs`` lets the head see the members' raw outputs
(logits, or standardised values) as well, or only those (a learned stacking head).

A linear head starts as the members' averaged outputs (``head_start="average"``: its weight
over member j's embedding is j's own last layer divided by K), so training can only move it
away from logit averaging where that helps. Which rows it learns from matters more than its
shape: on the members' training rows (``head_rows="train"``) the embeddings are in-sample
for the members and look more separable than on new rows, so the head learns to trust them
too much; it therefore stops early on the rows the members held out (``validation_rows_``),
and keeps its start when no epoch beats it there. ``head_rows="held_out"`` trains it on the
held-out rows only (embeddings the members never fitted), stopping on a seeded part of them.
Measured on adult and churn (5 MLPs of 2x256): every head stayed within 0.002 log-loss of
the members' mean probabilities; randomly started heads over the embeddings (linear or with
a hidden layer) were 0.02-0.26 worse.

``predict_members`` returns ``(n_samples, K + 1, n_outputs)``: the K members' own predictions
(columns ``0..K-1``, the DeepEnsemble's members) and the fused head (column ``K``). A combiner
over cross-fitted predictions then sees honest out-of-fold numbers for both the head and the
members it fuses, so it can keep the head, fall back on the members where the head overfits,
or mix them; ``member_columns=False`` yields the head alone. ``predict`` / ``predict_proba``
are the head's. Saved as one safetensors file with a JSON config
(:mod:`ensemblex.deep.serialization`): nothing unpickled.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import torch
from sklearn.base import ClassifierMixin, RegressorMixin
from torch import nn

from ensemblex.deep.base import DeepMembersBase
from ensemblex.deep.batched import BatchedMLP
from ensemblex.deep.ensemble import DeepEnsembleClassifier, DeepEnsembleRegressor
from ensemblex.deep.training import (
    Targets,
    clone_state,
    encode_targets,
    supervised_loss,
    train,
    validation_split,
)
from ensemblex.predictions import Predictions

HEAD_INPUTS = ("embeddings", "outputs", "both")
HEAD_STARTS = ("average", "random")
HEAD_ROWS = ("train", "held_out")
# rows per forward pass: the head's inputs are (rows, K * width), which for K = 5 members of
# width 256 over a whole table would take hundreds of megabytes
_CHUNK = 4096
# the DeepEnsemble parameters a fusion model passes on unchanged
_MEMBER_PARAMS = (
    "n_members",
    "hidden",
    "dropout",
    "lr",
    "weight_decay",
    "batch_size",
    "max_epochs",
    "patience",
    "validation_fraction",
    "random_state",
)


# ---------------------------------------------------------------- pieces
def member_embeddings(members: BatchedMLP, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every member's last hidden activations and its raw output, in one pass.

    Input: ``x`` of shape ``(B, d_in)`` (shared by the members).
    Output: ``(embeddings, outputs)`` of shapes ``(K, B, h_last)`` and ``(K, B, d_out)``.

    Examples
    --------
    >>> mlp = BatchedMLP(3, 4, 2, hidden=(8, 5))
    >>> emb, out = member_embeddings(mlp, torch.ones(6, 4))
    >>> tuple(emb.shape), tuple(out.shape)
    ((3, 6, 5), (3, 6, 2))
    """
    h = x
    for layer in members.layers[:-1]:
        h = members.dropout(torch.relu(layer(h)))
    return h, members.layers[-1](h)


class FusionHead(nn.Module):
    """Standardise the fused features, then dropout and a linear layer (or an MLP).

    Input: ``(B, d_in)``. Output: ``(B, d_out)``. The per-feature ``mean`` and ``scale``
    (fitted on the training rows) are buffers, so they travel with the weights.

    Examples
    --------
    >>> head = FusionHead(6, 3, hidden=(4,), dropout=0.1)
    >>> head(torch.ones(2, 6)).shape
    torch.Size([2, 3])
    """

    def __init__(self, d_in: int, d_out: int, hidden: tuple[int, ...] = (), dropout: float = 0.0):
        super().__init__()
        self.register_buffer("mean", torch.zeros(d_in))
        self.register_buffer("scale", torch.ones(d_in))
        sizes = [d_in, *hidden, d_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(sizes))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.dropout((z - self.mean) / self.scale)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = self.dropout(torch.relu(h))
        return h


class FusionNetwork(nn.Module):
    """K frozen MLPs and the head over their embeddings (and/or outputs).

    Input: ``(B, d_in)``. Output of ``forward``: ``(member_outputs, fused)`` of shapes
    ``(K, B, d_out)`` and ``(B, d_out)``.
    """

    def __init__(self, members: BatchedMLP, head: FusionHead, head_inputs: str = "embeddings"):
        super().__init__()
        self.members, self.head, self.head_inputs = members, head, head_inputs

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's inputs ``(B, d_head)`` (every member's embedding, member by member,
        then, with ``"both"``, every member's output) and the members' raw outputs
        ``(K, B, d_out)``."""
        embeddings, outputs = member_embeddings(self.members, x)
        parts = {"embeddings": [embeddings], "outputs": [outputs], "both": [embeddings, outputs]}
        # (K, B, w) -> (B, K * w): member j's block is columns j*w .. (j+1)*w - 1
        flat = [p.transpose(0, 1).reshape(x.shape[0], -1) for p in parts[self.head_inputs]]
        return torch.cat(flat, dim=1), outputs

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, outputs = self.features(x)
        return outputs, self.head(z)


def average_start(head: FusionHead, members: BatchedMLP, head_inputs: str) -> None:
    """Set a linear ``head`` (already standardising) to the mean of the members' raw outputs.

    Member ``j``'s output is its embedding times its last layer, so the head's weight over
    member ``j``'s embedding block is that layer divided by K (or, reading outputs, the
    identity divided by K), undoing the head's standardisation. Training then starts from the
    members' averaged logits (averaged predictions for a regressor), not from noise.
    """
    if len(head.layers) != 1:
        raise ValueError(
            f"an average start needs a linear head, however: {len(head.layers)} layers"
        )
    last = members.layers[-1]
    k, n_out = last.weight.shape[0], last.weight.shape[2]
    blocks = {
        "embeddings": [last.weight],
        "outputs": [torch.eye(n_out).expand(k, n_out, n_out)],
        "both": [last.weight, torch.zeros(k, n_out, n_out)],
    }[head_inputs]
    weight = torch.cat([b.reshape(-1, n_out) for b in blocks]) / k  # (d_head, n_out)
    bias = last.bias.mean(dim=0)[0] if head_inputs != "outputs" else torch.zeros(n_out)
    with torch.no_grad():
        # (z - mean) / scale @ W' + b' == z @ W + b for W' = scale * W, b' = b + mean @ W
        head.layers[0].weight.copy_((weight * head.scale[:, None]).T)
        head.layers[0].bias.copy_(bias + head.mean @ weight)


def head_width(n_members: int, hidden: tuple[int, ...], n_out: int, head_inputs: str) -> int:
    """How many features the head reads: ``K * h_last`` embeddings and/or ``K * n_out``
    outputs."""
    per_member = {"embeddings": hidden[-1], "outputs": n_out, "both": hidden[-1] + n_out}
    return int(n_members) * per_member[head_inputs]


# ---------------------------------------------------------------- the estimators
class _Fusion(DeepMembersBase):
    _ensemble_class: type = DeepEnsembleRegressor

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
        head_inputs="embeddings",
        head_hidden=(),
        head_start="average",
        head_rows="train",
        head_validation_fraction=0.3,
        head_dropout=0.1,
        head_lr=1e-4,
        head_weight_decay=1e-2,
        head_max_epochs=100,
        head_patience=10,
        member_columns=True,
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
        self.head_inputs = head_inputs
        self.head_hidden = head_hidden
        self.head_start = head_start
        self.head_rows = head_rows
        self.head_validation_fraction = head_validation_fraction
        self.head_dropout = head_dropout
        self.head_lr = head_lr
        self.head_weight_decay = head_weight_decay
        self.head_max_epochs = head_max_epochs
        self.head_patience = head_patience
        self.member_columns = member_columns
        self.n_threads = n_threads

    @property
    def ensemble_size(self) -> int:
        """How many columns :meth:`predict_members` returns (``n_members + 1``, or 1 without
        ``member_columns``): what :class:`~ensemblex.members.torch.TorchMember` reads."""
        return int(self.n_members) + 1 if self.member_columns else 1

    def column_names(self) -> list[str]:
        """Names of :meth:`predict_members`' columns: ``mlp0`` ... and ``fusion`` last."""
        members = [f"mlp{j}" for j in range(int(self.n_members))] if self.member_columns else []
        return [*members, "fusion"]

    # ------------------------------------------------------------ checks and pieces
    def _check_params(self) -> None:
        if self.head_inputs not in HEAD_INPUTS:
            raise ValueError(
                f"head_inputs must be one of {HEAD_INPUTS}, "
                f"however: head_inputs={self.head_inputs!r}"
            )
        if self.head_start not in HEAD_STARTS:
            raise ValueError(
                f"head_start must be one of {HEAD_STARTS}, however: head_start={self.head_start!r}"
            )
        if self.head_rows not in HEAD_ROWS:
            raise ValueError(
                f"head_rows must be one of {HEAD_ROWS}, however: head_rows={self.head_rows!r}"
            )
        if self.head_start == "average" and len(self.head_hidden) > 0:
            raise ValueError(
                "head_start='average' needs a linear head (head_hidden=()), however: "
                f"head_hidden={self.head_hidden!r}; use head_start='random'"
            )
        for name in ("hidden", "head_hidden"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or not all(
                isinstance(v, (int, np.integer)) and v >= 1 for v in value
            ):
                raise ValueError(
                    f"{name} must be a tuple of positive ints, however: {name}={value!r}"
                )
        if len(self.hidden) == 0:
            raise ValueError(
                "hidden must hold at least one layer (its activations are what the head fuses), "
                f"however: hidden={self.hidden!r}"
            )
        if not 0.0 <= float(self.head_dropout) < 1.0:
            raise ValueError(
                f"head_dropout must be in [0, 1), however: head_dropout={self.head_dropout}"
            )
        for name in ("head_max_epochs", "head_patience"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, however: {name}={getattr(self, name)}")

    def _deep_ensemble(self):
        """The unfitted DeepEnsemble whose members this model fuses (threads are set by
        :meth:`fit` around both)."""
        params = {name: getattr(self, name) for name in _MEMBER_PARAMS}
        return self._ensemble_class(**params, architecture="mlp", n_threads=None)

    def _build_head(self, n_out: int) -> FusionHead:
        width = head_width(self.n_members, tuple(self.hidden), n_out, self.head_inputs)
        return FusionHead(width, n_out, tuple(self.head_hidden), float(self.head_dropout))

    def _adopt(self, ensemble) -> None:
        """Copy the DeepEnsemble's fitted input and target handling onto this model."""
        self.deep_ensemble_ = ensemble
        self.n_features_in_ = ensemble.n_features_in_
        if self._classifier:
            self.classes_ = ensemble.classes_
        else:
            self.y_mean_, self.y_scale_ = ensemble.y_mean_, ensemble.y_scale_

    def _features(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Head inputs ``(n, d_head)`` and member outputs ``(K, n, d_out)``, in row chunks."""
        self.model_.eval()
        with torch.no_grad():
            parts = [self.model_.features(part) for part in inputs.split(_CHUNK)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts], dim=1)

    # ------------------------------------------------------------ fit
    def _fit(self, X, y):
        self._check_params()
        ensemble = self._deep_ensemble().fit(X, y)  # the members, trained as they are alone
        return self._fit_head(ensemble, X, y)

    def _head_split(self, targets: Targets) -> tuple[np.ndarray, np.ndarray]:
        """Rows the head trains on and rows it stops early on (positions in the table).

        ``"train"``: the members' training rows, stopping on the rows they held out.
        ``"held_out"``: only the held-out rows (embeddings the members never fitted), split
        again, stratified and seeded, ``head_validation_fraction`` of them to stop on.
        """
        held_out = self.validation_rows_
        if self.head_rows == "train":
            return np.setdiff1d(np.arange(len(targets.values)), held_out), held_out
        subset = Targets(targets.values[held_out], targets.classes)
        fit, stop = validation_split(subset, self.head_validation_fraction, self.random_state)
        return held_out[np.sort(fit)], held_out[np.sort(stop)]

    def _fit_head(self, ensemble, X, y):
        """Freeze the fitted ``ensemble``'s members and train the head over them on the rows
        :meth:`_head_split` gives; returns self."""
        self._adopt(ensemble)
        self.validation_rows_ = ensemble.validation_rows_
        targets = encode_targets(y, classifier=self._classifier)
        n_out = len(self.classes_) if self._classifier else 1
        torch.manual_seed(self.random_state)  # DeepMembersBase.fit forks the global generator
        self.model_ = FusionNetwork(ensemble.model_, self._build_head(n_out), self.head_inputs)
        self.model_.members.requires_grad_(False)  # frozen: only the head learns
        z, _ = self._features(ensemble._inputs(X))
        train_idx, val_idx = self._head_split(targets)
        z_tr, y_tr = z[train_idx], targets.values[train_idx]
        z_val, y_val = z[val_idx], targets.values[val_idx]
        head = self.model_.head
        std = z_tr.std(dim=0)
        head.mean.copy_(z_tr.mean(dim=0))
        head.scale.copy_(torch.where(std > 0, std, torch.ones_like(std)))
        if self.head_start == "average":
            average_start(head, self.model_.members, self.head_inputs)
        task = "multiclass" if self._classifier else "regression"

        def batch_loss(rows: torch.Tensor) -> torch.Tensor:
            return supervised_loss(head(z_tr[rows]), y_tr[rows], task)

        def validation_loss() -> float:
            return float(supervised_loss(head(z_val), y_val, task))

        head.eval()
        with torch.no_grad():
            start_loss, start = validation_loss(), clone_state(head)

        result = train(
            head,
            batch_loss,
            len(train_idx),
            max_epochs=int(self.head_max_epochs),
            batch_size=int(self.batch_size),
            lr=self.head_lr,
            weight_decay=self.head_weight_decay,
            random_state=self.random_state,
            seed_global=False,
            validation_loss=validation_loss,
            patience=int(self.head_patience),
        )
        # the start counts as epoch 0: training on embeddings of rows the members fitted can
        # only make the head worse on rows they did not, and then the start is kept
        self.head_history_ = [start_loss, *result.val_history]
        self.head_best_validation_loss_ = min(start_loss, result.best_loss)
        if start_loss <= result.best_loss:
            head.load_state_dict(start)
        self.model_.eval()
        return self

    # ------------------------------------------------------------ predict
    def _predict_all(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Members ``(n_samples, K, n_outputs)`` and the head ``(n_samples, n_outputs)``, as
        probabilities (classifier) or in the target's units (regressor), float64."""
        if not hasattr(self, "model_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit first")
        inputs = self.deep_ensemble_._inputs(X)
        self.model_.eval()
        with torch.no_grad():
            parts = [self.model_(part) for part in inputs.split(_CHUNK)]
        outputs = torch.cat([p[0] for p in parts], dim=1).double().permute(1, 0, 2)
        fused = torch.cat([p[1] for p in parts]).double()
        if self._classifier:
            # softmax in float64 so that each row sums to one to numpy's tolerance
            return torch.softmax(outputs, dim=-1).numpy(), torch.softmax(fused, dim=-1).numpy()
        return (
            outputs.numpy() * self.y_scale_ + self.y_mean_,
            fused.numpy() * self.y_scale_ + self.y_mean_,
        )

    def predict_members(self, X) -> np.ndarray:
        """The members and the fused head: ``(n_samples, n_members + 1, n_outputs)`` with the
        head last, or ``(n_samples, 1, n_outputs)`` without ``member_columns``."""
        members, fused = self._predict_all(X)
        if not self.member_columns:
            return fused[:, None, :]
        return np.concatenate([members, fused[:, None, :]], axis=1)

    def member_predictions(self, X) -> Predictions:
        """:meth:`predict_members` as a :class:`Predictions` named by :meth:`column_names`."""
        values = self.predict_members(X)
        if not self._classifier:
            return Predictions(values, self.column_names(), "regression")
        task = "binary" if len(self.classes_) == 2 else "multiclass"
        return Predictions(values, self.column_names(), task, classes=self.classes_)

    # ------------------------------------------------------------ serialization hooks
    def _fitted_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        # the members' input and target handling; the head's weights and its feature
        # standardisation are in the network's state dict
        return self.deep_ensemble_._fitted_state()

    def _restore(self, fitted: dict, arrays: dict[str, np.ndarray]) -> None:
        self._check_params()
        ensemble = self._deep_ensemble()
        ensemble._restore(fitted, arrays)
        self._adopt(ensemble)
        n_out = len(self.classes_) if self._classifier else 1
        self.model_ = FusionNetwork(ensemble.model_, self._build_head(n_out), self.head_inputs)


class FusionClassifier(ClassifierMixin, _Fusion):
    """A deep ensemble of MLP classifiers fused by a head over their embeddings (see the
    module docstring).

    Parameters
    ----------
    n_members, hidden, dropout, lr, weight_decay, batch_size, max_epochs, patience,
    validation_fraction, random_state
        The members' settings, passed to :class:`~ensemblex.deep.DeepEnsembleClassifier`
        (MLPs only): the members are that ensemble's, to the last bit. ``hidden`` needs at
        least one layer; its last width is each member's embedding size.
    head_inputs : {"embeddings", "outputs", "both"}, default "embeddings"
        What the head reads from each member: its last hidden activations, its logits, or
        both.
    head_hidden : tuple of int, default ()
        Hidden widths of the head; ``()`` is a linear head.
    head_start : {"average", "random"}, default "average"
        ``"average"``: a linear head starts as the mean of the members' logits;
        ``"random"``: PyTorch's default initialisation (needed with ``head_hidden``).
    head_rows : {"train", "held_out"}, default "train"
        ``"train"``: the head learns on the members' training rows and stops early on the
        rows they held out; ``"held_out"``: it learns on the held-out rows only and stops
        early on ``head_validation_fraction`` of them (stratified, seeded).
    head_validation_fraction : float, default 0.3
        Share of the held-out rows the head stops on, ``head_rows="held_out"`` only.
    head_dropout : float, default 0.1
        Dropout on the head's (standardised) inputs and hidden activations.
    head_lr, head_weight_decay, head_max_epochs, head_patience
        The head's AdamW training. Its start counts as epoch 0 of early stopping: the head
        keeps it unless an epoch has a lower validation loss.
    member_columns : bool, default True
        Whether :meth:`predict_members` also returns the members' own predictions (before the
        head's column), so that a combiner can weigh the head against them.
    n_threads : int, optional
        Torch threads during ``fit``.

    Attributes
    ----------
    deep_ensemble_ : DeepEnsembleClassifier
        The fitted members (its ``predict_proba`` is their mean).
    validation_rows_ : ndarray
        Rows the members held out for early stopping.
    head_history_ : list of float
        The head's validation log-loss at its start, then after every epoch.
    head_best_validation_loss_ : float
        The lowest of them: the head's weights are that epoch's.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> model = FusionClassifier(n_members=2, hidden=(8,), max_epochs=2, head_max_epochs=2)
    >>> model.fit(X, y).predict_members(X[:3]).shape
    (3, 3, 2)
    >>> model.predict_proba(X[:3]).shape
    (3, 2)
    """

    _classifier = True
    _ensemble_class = DeepEnsembleClassifier

    def predict_proba(self, X) -> np.ndarray:
        """The head's probabilities, ``(n_samples, n_classes)``."""
        return self._predict_all(X)[1]

    def predict(self, X) -> np.ndarray:
        """The head's most probable class, ``(n_samples,)``."""
        proba = self.predict_proba(X)  # first: it says when the model is not fitted
        return self.classes_[proba.argmax(axis=1)]


class FusionRegressor(RegressorMixin, _Fusion):
    """A deep ensemble of MLP regressors fused by a head over their embeddings (see
    :class:`FusionClassifier`; ``head_inputs="outputs"`` reads the members' standardised
    predictions, ``head_history_`` holds the MSE of the standardised target)."""

    _classifier = False
    _ensemble_class = DeepEnsembleRegressor

    def predict(self, X) -> np.ndarray:
        """The head's prediction, ``(n_samples,)``."""
        return self._predict_all(X)[1][:, 0]
