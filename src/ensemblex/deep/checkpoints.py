"""Members from one training run: snapshot ensembles and an online model with its EMA twin.

:func:`train_snapshots` trains one network with a cyclic cosine learning rate (warm
restarts, Huang et al. 2017, "Snapshot Ensembles: Train 1, get M for free") and keeps the
weights at the end of every cycle, where the learning rate is lowest; alongside, it keeps an
exponential moving average of the weights (:class:`torch.optim.swa_utils.AveragedModel`).
:func:`stacked_predictions` evaluates many weight sets of one architecture as a single
vectorised computation (``torch.func``), returning the predictions array
``(n_samples, n_members, n_outputs)`` that combiners, metrics and cascades read.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ensemblex.deep.training import (
    StateDict,
    as_inputs,
    as_targets,
    clone_state,
    supervised_loss,
    train,
)
from ensemblex.predictions import Predictions
from ensemblex.tasks import check_task, is_classification


def check_state_dicts(state_dicts: Sequence[Mapping[str, torch.Tensor]], name: str) -> None:
    """Raise unless all state dicts hold the same keys with the same shapes and dtypes."""
    if len(state_dicts) == 0:
        raise ValueError(f"{name} must hold at least one state dict, however: {name}=[]")
    ref = state_dicts[0]
    for i, sd in enumerate(state_dicts[1:], start=1):
        if set(sd) != set(ref):
            diff = sorted(set(sd) ^ set(ref))
            raise ValueError(
                f"{name}[{i}] has other keys than {name}[0]; keys in only one of them: {diff}"
            )
        for key, tensor in sd.items():
            if tensor.shape != ref[key].shape or tensor.dtype != ref[key].dtype:
                raise ValueError(
                    f"{name}[{i}][{key!r}] must match {name}[0][{key!r}], however: "
                    f"{tuple(tensor.shape)} {tensor.dtype} vs "
                    f"{tuple(ref[key].shape)} {ref[key].dtype}"
                )


def check_fits(module: nn.Module, state_dict: Mapping[str, torch.Tensor], name: str) -> None:
    """Raise unless ``state_dict`` has exactly the keys and shapes of ``module``'s state."""
    own = module.state_dict()
    if set(own) != set(state_dict):
        raise ValueError(
            f"{name} does not fit the module; missing keys {sorted(set(own) - set(state_dict))}, "
            f"unexpected keys {sorted(set(state_dict) - set(own))}"
        )
    for key, tensor in own.items():
        if state_dict[key].shape != tensor.shape:
            raise ValueError(
                f"{name}[{key!r}] must have shape {tuple(tensor.shape)} as in the module, "
                f"however: {tuple(state_dict[key].shape)}"
            )


@dataclass
class SnapshotRun:
    """The members one run produced, as state dicts of the trained module.

    Attributes
    ----------
    snapshots : list of dict
        The weights at the end of each learning-rate cycle, in order.
    online_state : dict
        The weights after the last step (equal to the last snapshot).
    ema_state : dict
        The exponential moving average of the weights (and of the buffers).
    task : str
    history : list of float
        Mean training loss of each epoch.
    lrs : list of float
        The learning rate at the start of each epoch (shows the cycles).
    """

    snapshots: list[StateDict]
    online_state: StateDict
    ema_state: StateDict
    task: str
    history: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)

    def states(self) -> dict[str, StateDict]:
        """All members by name: ``snapshot0..snapshot{M-1}``, ``online``, ``ema``."""
        named = {f"snapshot{i}": sd for i, sd in enumerate(self.snapshots)}
        return {**named, "online": self.online_state, "ema": self.ema_state}

    def predictions(
        self, module: nn.Module, X, members: Sequence[str] | None = None, classes=None
    ) -> Predictions:
        """Members' predictions on ``X`` as :class:`Predictions` (one vectorised pass).

        Parameters
        ----------
        module : nn.Module
            The architecture that was trained (its own weights are not used).
        X : array-like of shape (n_samples, ...)
        members : sequence of str, optional
            Names from :meth:`states`; default all of them.
        classes : array-like, optional
            Class labels of the outputs (classification), default ``0..k-1``.
        """
        states = self.states()
        members = list(states) if members is None else list(members)
        unknown = [m for m in members if m not in states]
        if unknown:
            raise ValueError(f"members must be among {list(states)}, however: {unknown}")
        values = stacked_predictions(module, [states[m] for m in members], X, task=self.task)
        return Predictions(values, members, self.task, classes=classes)


def train_snapshots(
    module: nn.Module,
    X,
    y,
    *,
    task: str,
    n_cycles: int = 5,
    epochs_per_cycle: int = 10,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    batch_size: int = 128,
    ema_decay: float = 0.999,
    random_state: int = 0,
) -> SnapshotRun:
    """Train ``module`` once, keeping a snapshot per cosine cycle and an EMA of the weights.

    SGD with momentum; the learning rate follows
    :class:`~torch.optim.lr_scheduler.CosineAnnealingWarmRestarts` stepped every batch, from
    ``lr`` down to 0 over ``epochs_per_cycle`` epochs, then restarts. The EMA is updated
    after every step with ``ema_decay`` (:func:`~torch.optim.swa_utils.get_ema_multi_avg_fn`;
    buffers such as BatchNorm statistics are averaged too).

    Parameters
    ----------
    module : nn.Module
        Maps a batch ``(B, ...)`` to ``(B, n_outputs)``: logits for classification (one per
        class, two for binary), one value for regression. Trained in place.
    X : array-like of shape (n_samples, ...)
    y : array-like of shape (n_samples,)
        Class codes ``0..k-1`` for classification; values for regression (standardise them).
    task : {"regression", "binary", "multiclass"}
    n_cycles, epochs_per_cycle : int
        Number of snapshots and the length of each cycle.
    lr, momentum, weight_decay, batch_size
        SGD settings; ``lr`` is the peak of each cycle.
    ema_decay : float in (0, 1)
    random_state : int
        Seeds the batch order and dropout (the global RNG is left as it was).

    Returns
    -------
    SnapshotRun
    """
    check_task(task)
    if n_cycles < 1 or epochs_per_cycle < 1:
        raise ValueError(
            f"n_cycles and epochs_per_cycle must be >= 1, however: "
            f"n_cycles={n_cycles}, epochs_per_cycle={epochs_per_cycle}"
        )
    if not 0.0 < ema_decay < 1.0:
        raise ValueError(f"ema_decay must be in (0, 1), however: ema_decay={ema_decay}")
    X = as_inputs(X)
    y = as_targets(y, task, len(X))
    steps_per_epoch = len(X) // min(int(batch_size), len(X))  # the partial batch is dropped
    optimizer = torch.optim.SGD(
        module.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=epochs_per_cycle * steps_per_epoch
    )
    ema = AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
    snapshots = []

    def after_step() -> None:
        scheduler.step()
        ema.update_parameters(module)

    def after_epoch(epoch: int) -> None:
        if (epoch + 1) % epochs_per_cycle == 0:  # the end of a cycle: the lowest lr
            snapshots.append(clone_state(module))

    result = train(
        module,
        lambda rows: supervised_loss(module(X[rows]), y[rows], task),
        len(X),
        max_epochs=n_cycles * epochs_per_cycle,
        batch_size=batch_size,
        optimizer=optimizer,
        random_state=random_state,
        after_step=after_step,
        after_epoch=after_epoch,
    )
    online = clone_state(module)  # train() leaves the module in eval mode
    # AveragedModel also averages integer buffers (BatchNorm's num_batches_tracked): a count
    # is not a weight, so the EMA twin takes the online model's
    ema_state = {
        key: t if t.is_floating_point() else online[key].clone()
        for key, t in clone_state(ema.module).items()
    }
    return SnapshotRun(
        snapshots=snapshots,
        online_state=online,
        ema_state=ema_state,
        task=task,
        history=result.history,
        lrs=result.lrs,
    )


def stacked_predictions(
    module: nn.Module,
    state_dicts: Sequence[Mapping[str, torch.Tensor]],
    X,
    *,
    task: str,
    batch_size: int = 4096,
) -> np.ndarray:
    """Evaluate many weight sets of one architecture as one vectorised computation.

    The state dicts' tensors are stacked along a new first axis (the layout of
    :func:`torch.func.stack_module_state`) and the module runs once per row batch under
    :func:`torch.func.vmap` over the members (eval mode).

    Parameters
    ----------
    module : nn.Module
        The architecture; its own weights are not used.
    state_dicts : sequence of dict
        ``M`` state dicts that fit ``module``.
    X : array-like of shape (n_samples, ...)
    task : {"regression", "binary", "multiclass"}
        Classification applies a softmax to the outputs.
    batch_size : int
        Rows per pass (bounds memory: ``M * batch_size`` activations at once).

    Returns
    -------
    ndarray of shape (n_samples, M, n_outputs)
        Probabilities for classification, raw outputs for regression.
    """
    check_task(task)
    check_state_dicts(state_dicts, "state_dicts")
    check_fits(module, state_dicts[0], "state_dicts[0]")
    # the members' tensors stacked along a new first axis, as stack_module_state would give,
    # without building a module per member
    params = {
        name: torch.stack([sd[name].detach() for sd in state_dicts])
        for name, _ in module.named_parameters()
    }
    buffers = {
        name: torch.stack([sd[name].detach() for sd in state_dicts])
        for name, _ in module.named_buffers()
    }
    # the template only lends its forward(); its weights never run, so it can live on meta
    template = copy.deepcopy(module).to("meta").eval()

    def run(p, b, x):
        return functional_call(template, (p, b), (x,))

    X = as_inputs(X)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(X), batch_size):
            out = vmap(run, in_dims=(0, 0, None))(params, buffers, X[start : start + batch_size])
            chunks.append(out.reshape(out.shape[0], out.shape[1], -1))  # (M, B, k)
    out = torch.cat(chunks, dim=1)
    if is_classification(task):
        out = torch.softmax(out.double(), dim=-1)
    return out.permute(1, 0, 2).double().numpy()
