"""One training loop for every deep model in the package, and the pieces around it.

:func:`train` runs minibatch epochs over ``n_rows`` training rows: a batch order drawn from
a seeded :class:`torch.Generator` (one order shared by the model, or one per member), AdamW
unless another optimiser is given, the last partial batch dropped, the mean training loss
of each epoch recorded, and, when a validation loss is given, early stopping that puts the
best epoch's weights back (:class:`EarlyStopping`). It runs inside
:func:`torch.random.fork_rng`, so dropout is seeded without touching the caller's global
generator. The model and the data stay with the caller: a ``batch_loss(rows)`` closure
turns a batch of row indices into a loss, and two hooks (``after_step``, ``after_epoch``)
cover what only one caller does (a learning-rate schedule, an EMA twin, snapshots).

Around it, in the order they are used: inputs and targets (:func:`as_inputs`,
:func:`as_targets` for class codes, :func:`encode_targets` for the estimators' labels),
the validation split (:func:`validation_split`), losses of one model and of K members
(:func:`supervised_loss`, :func:`member_loss`, :func:`mean_prediction_loss`), and weights
(:func:`clone_state`, :class:`EarlyStopping`).

Callers: :class:`~ensemblex.deep.ensemble.DeepEnsembleClassifier` and its regressor,
:class:`~ensemblex.deep.tabm.TabMClassifier` and its regressor,
:func:`~ensemblex.deep.checkpoints.train_snapshots` and
:func:`~ensemblex.deep.distillation.distill`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn import functional as F

from ensemblex.tasks import is_classification

StateDict = dict[str, torch.Tensor]


# ---------------------------------------------------------------- inputs and targets
def as_inputs(X) -> torch.Tensor:
    """``X`` as a float32 tensor (a numpy array or a tensor, any trailing shape)."""
    X = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X)
    if X.dim() < 2:
        raise ValueError(f"X must be (n_samples, ...), however: X.shape={tuple(X.shape)}")
    return X.float()


def as_targets(y, task: str, n: int) -> torch.Tensor:
    """Class codes ``0..k-1`` (int64) for classification, float32 values for regression."""
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    if y.shape[0] != n:
        raise ValueError(f"y must have {n} rows like X, however: y.shape={tuple(y.shape)}")
    if not is_classification(task):
        return y.float().reshape(n)
    if y.is_floating_point() and not torch.equal(y, y.round()):
        raise ValueError(f"y must hold class codes 0..k-1 for task={task!r}, however: {y[:5]}")
    y = y.long().reshape(n)
    if y.min() < 0:
        raise ValueError(f"y must hold class codes 0..k-1, however: min(y)={int(y.min())}")
    return y


@dataclass
class Targets:
    """Labels as the networks see them.

    Attributes
    ----------
    values : Tensor of shape (n_samples,)
        Class codes (int64) for a classifier; the standardised target (float32) otherwise.
    classes : ndarray or None
        The labels behind the codes, sorted (classifier only).
    mean, scale : float
        ``y = values * scale + mean`` (regression; 0 and 1 for a classifier).
    """

    values: torch.Tensor
    classes: np.ndarray | None = None
    mean: float = 0.0
    scale: float = 1.0

    @property
    def codes(self) -> np.ndarray | None:
        """The class codes as a numpy array (what a stratified split reads), or None."""
        return None if self.classes is None else self.values.numpy()


def encode_targets(y, *, classifier: bool) -> Targets:
    """Labels to class codes, or a target to its standardised values (float64 statistics).

    Examples
    --------
    >>> t = encode_targets(["b", "a", "b"], classifier=True)
    >>> t.classes.tolist(), t.values.tolist()
    (['a', 'b'], [1, 0, 1])
    >>> t = encode_targets([1.0, 3.0], classifier=False)
    >>> t.values.tolist(), t.mean, t.scale
    ([-1.0, 1.0], 2.0, 1.0)
    """
    y = np.asarray(y)
    if classifier:
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"y must hold at least 2 classes, however: classes={classes}")
        return Targets(torch.as_tensor(codes.reshape(-1), dtype=torch.long), classes)
    y = y.astype(np.float64)
    if not np.all(np.isfinite(y)):
        raise ValueError("y holds NaN or inf; drop those rows first")
    mean, scale = float(y.mean()), float(y.std() or 1.0)
    return Targets(torch.as_tensor((y - mean) / scale, dtype=torch.float32), None, mean, scale)


def validation_split(
    targets: Targets, fraction: float, random_state: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, validation)``: disjoint, stratified by class for a classifier.

    ``fraction`` of the rows (rounded up) go to validation, drawn by
    :func:`sklearn.model_selection.train_test_split` with ``random_state``.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(
            f"validation_fraction must be in (0, 1), however: validation_fraction={fraction}"
        )
    return train_test_split(
        np.arange(len(targets.values)),
        test_size=fraction,
        random_state=random_state,
        stratify=targets.codes,
    )


# ---------------------------------------------------------------- losses
def supervised_loss(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """One model's loss: cross-entropy on logits ``(B, k)`` for classification; MSE on
    ``out[:, 0]`` otherwise."""
    if is_classification(task):
        return F.cross_entropy(out, y)
    return F.mse_loss(out.reshape(len(y), -1)[:, 0], y)


def member_loss(
    out: torch.Tensor, y: torch.Tensor, *, classifier: bool, member_axis: int = 0
) -> torch.Tensor:
    """Mean of K members' losses (cross-entropy on logits, or MSE on ``out[..., 0]``).

    Input: ``out`` of shape ``(K, B, n_out)`` (``member_axis=0``) or ``(B, K, n_out)``
    (``member_axis=1``); ``y`` of shape ``(B,)`` shared by the members, or with the member
    axis where ``out`` has it when each member sees its own batch. Output: a scalar.
    """
    if y.dim() == out.dim() - 2:  # one target per row, shared by the members
        y = y.unsqueeze(member_axis).expand(out.shape[:-1])
    if classifier:
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
    return F.mse_loss(out[..., 0], y)


def mean_prediction_loss(
    out: torch.Tensor, y: torch.Tensor, *, classifier: bool, member_axis: int = 0
) -> float:
    """Loss of the members' mean prediction (what the estimators' early stopping watches).

    Log-loss of the mean softmax for a classifier, MSE of the mean ``out[..., 0]``
    otherwise. Input: ``out`` as in :func:`member_loss`, ``y`` of shape ``(B,)``.
    """
    if classifier:
        proba = torch.softmax(out, dim=-1).mean(dim=member_axis)
        return float(F.nll_loss(torch.log(proba.clamp_min(1e-12)), y))
    return float(F.mse_loss(out[..., 0].mean(dim=member_axis), y))


# ---------------------------------------------------------------- weights
def clone_state(module: nn.Module) -> StateDict:
    """A detached copy of ``module.state_dict()`` (a later training step does not change it)."""
    return {key: t.detach().clone() for key, t in module.state_dict().items()}


class EarlyStopping:
    """Keeps the weights of the epoch with the lowest validation loss and says when
    ``patience`` epochs have passed without a better one (better: lower by over ``1e-6``).

    Examples
    --------
    >>> stop = EarlyStopping(torch.nn.Linear(2, 1), patience=2)
    >>> [stop.step(loss) for loss in (1.0, 0.5, 0.7, 0.6)]
    [False, False, False, True]
    >>> stop.best, stop.best_epoch, stop.history
    (0.5, 1, [1.0, 0.5, 0.7, 0.6])
    """

    def __init__(self, model: nn.Module, patience: int):
        self.model, self.patience = model, int(patience)
        self.best, self.best_epoch, self.state = float("inf"), -1, None
        self.waited, self.history = 0, []

    def step(self, loss: float) -> bool:
        """Record one epoch's validation loss; True when training should stop."""
        self.history.append(loss)
        if loss < self.best - 1e-6:
            self.best, self.best_epoch, self.waited = loss, len(self.history) - 1, 0
            self.state = clone_state(self.model)
        else:
            self.waited += 1
        return self.waited >= self.patience

    def restore(self) -> None:
        """Load the best epoch's weights back into the model."""
        if self.state is None:
            raise ValueError(
                f"no epoch reached a finite validation loss (history={self.history}); "
                "lower lr or raise max_epochs"
            )
        self.model.load_state_dict(self.state)


# ---------------------------------------------------------------- the trainer
@dataclass
class TrainResult:
    """What :func:`train` recorded.

    Attributes
    ----------
    history : list of float
        Mean training loss of each epoch (over its batches).
    val_history : list of float
        Validation loss of each epoch; empty without ``validation_loss``.
    lrs : list of float
        Learning rate of the first parameter group at the start of each epoch.
    best_epoch : int
        The epoch whose weights the module holds: the lowest validation loss, else the last.
    best_loss : float
        That epoch's validation loss (its training loss without validation).
    """

    history: list[float] = field(default_factory=list)
    val_history: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_loss: float = float("inf")

    @property
    def n_epochs(self) -> int:
        """How many epochs ran."""
        return len(self.history)


def _check_train_args(n_rows, max_epochs, batch_size, patience, validation_loss) -> None:
    for name, value in (("n_rows", n_rows), ("max_epochs", max_epochs), ("batch_size", batch_size)):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, however: {name}={value}")
    if validation_loss is not None and int(patience) < 1:
        raise ValueError(f"patience must be >= 1, however: patience={patience}")


def _batch_order(n_rows: int, n_members: int | None, generator: torch.Generator) -> torch.Tensor:
    """A permutation of the rows ``(n_rows,)``, or one per member ``(n_members, n_rows)``."""
    if n_members is None:
        return torch.randperm(n_rows, generator=generator)
    return torch.argsort(torch.rand(int(n_members), n_rows, generator=generator), dim=1)


def _train_epoch(module, batch_loss, optimizer, order, batch, after_step) -> float:
    """One pass over ``order`` in full batches; returns the mean batch loss."""
    module.train()
    total, steps = 0.0, 0
    for start in range(0, order.shape[-1] - batch + 1, batch):  # the partial batch is dropped
        optimizer.zero_grad()
        loss = batch_loss(order[..., start : start + batch])
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step()
        total, steps = total + float(loss.detach()), steps + 1
    return total / max(steps, 1)


def _validate(module: nn.Module, validation_loss: Callable[[], float]) -> float:
    module.eval()
    with torch.no_grad():
        return float(validation_loss())


def _require_finite(history: list[float]) -> None:
    if not math.isfinite(history[-1]):
        raise ValueError(
            f"training loss is not finite at epoch {len(history) - 1} (history={history}); lower lr"
        )


def train(
    module: nn.Module,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    n_rows: int,
    *,
    max_epochs: int,
    batch_size: int,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    optimizer: torch.optim.Optimizer | None = None,
    random_state: int = 0,
    seed_global: bool = True,
    n_members: int | None = None,
    validation_loss: Callable[[], float] | None = None,
    patience: int = 10,
    max_seconds: float | None = None,
    after_step: Callable[[], None] | None = None,
    after_epoch: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train ``module`` in place by minibatch epochs; returns what was recorded.

    Every epoch draws a new order of the ``n_rows`` training rows from a
    :class:`torch.Generator` seeded with ``random_state``, and steps the optimiser once per
    full batch of ``min(batch_size, n_rows)`` rows (the partial batch is dropped). With
    ``validation_loss``, training stops after ``patience`` epochs without a better
    validation loss and the module gets the best epoch's weights back; without it, the
    module keeps the last epoch's weights. The module is left in eval mode.

    Parameters
    ----------
    module : nn.Module
        Its parameters are what the default optimiser trains.
    batch_loss : callable
        ``batch_loss(rows) -> scalar Tensor``: the loss of one batch, given the positions of
        its rows in the training set, ``(B,)``, or ``(n_members, B)`` with ``n_members``.
    n_rows : int
        How many training rows the positions index.
    max_epochs, batch_size : int
    lr, weight_decay : float
        Settings of the default optimiser, :class:`torch.optim.AdamW`.
    optimizer : torch.optim.Optimizer, optional
        Used instead of AdamW (``lr`` and ``weight_decay`` are then ignored).
    random_state : int
        Seeds the batch order and, with ``seed_global``, the global generator (dropout).
    seed_global : bool, default True
        Seed the global generator with ``random_state`` for the loop; False continues the
        caller's stream (e.g. one that just initialised the module). Either way the loop
        runs in :func:`torch.random.fork_rng`: the caller's global generator is untouched.
    n_members : int, optional
        Each of ``n_members`` members draws its own batch order (batched ensembles).
    validation_loss : callable, optional
        ``validation_loss() -> float``, called in eval mode without gradients after every
        epoch; lower is better.
    patience : int, default 10
        Epochs without a better validation loss before stopping.
    max_seconds : float, optional
        Stop after the epoch that crosses this time since the call.
    after_step : callable, optional
        ``after_step()``, called after every optimiser step (a scheduler, an EMA update).
    after_epoch : callable, optional
        ``after_epoch(epoch)``, called after every epoch's training pass (snapshots).

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError
        When no epoch reaches a finite validation loss, or, without validation, as soon as
        an epoch's training loss is not finite.

    Examples
    --------
    >>> X, y = torch.randn(64, 3), torch.randn(64)
    >>> net = nn.Linear(3, 1)
    >>> result = train(net, lambda rows: ((net(X[rows])[:, 0] - y[rows]) ** 2).mean(), 64,
    ...                max_epochs=3, batch_size=16)
    >>> result.n_epochs, result.best_epoch, len(result.lrs)
    (3, 2, 3)
    """
    _check_train_args(n_rows, max_epochs, batch_size, patience, validation_loss)
    if optimizer is None:
        optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    batch = min(int(batch_size), int(n_rows))
    generator = torch.Generator().manual_seed(random_state)
    stopping = None if validation_loss is None else EarlyStopping(module, patience)
    result = TrainResult()
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        if seed_global:
            torch.manual_seed(random_state)
        for epoch in range(int(max_epochs)):
            result.lrs.append(float(optimizer.param_groups[0]["lr"]))
            order = _batch_order(int(n_rows), n_members, generator)
            result.history.append(
                _train_epoch(module, batch_loss, optimizer, order, batch, after_step)
            )
            if after_epoch is not None:
                after_epoch(epoch)
            stop = False
            if stopping is None:
                _require_finite(result.history)
            else:
                stop = stopping.step(_validate(module, validation_loss))
            if stop or (max_seconds is not None and time.perf_counter() - start > max_seconds):
                break
    if stopping is None:
        result.best_epoch, result.best_loss = result.n_epochs - 1, result.history[-1]
    else:
        stopping.restore()
        result.val_history = stopping.history
        result.best_epoch, result.best_loss = stopping.best_epoch, stopping.best
    module.eval()
    return result
