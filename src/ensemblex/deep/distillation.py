"""Distil an ensemble into one smaller network, and measure what it kept and what it costs.

:func:`distill` trains a student on a mix of the teacher's averaged probabilities (the mean
prediction, for regression) and the labels, as MEAL V2 distils the averaged softmax of
several teachers. Any ensemble can teach: pass its averaged probabilities as an array
(``EnsembleClassifier.predict_proba``, ``DeepEnsembleClassifier.predict_proba``) or its
:class:`~ensemblex.predictions.Predictions`. :func:`flops_per_sample` counts the compute of a
forward pass with :class:`torch.utils.flop_counter.FlopCounterMode`, and
:func:`share_of_gain_kept` says how much of the ensemble's gain over a single model the
student kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

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


def _teacher_targets(teacher_outputs, task: str, n: int) -> torch.Tensor:
    """The teacher's mean prediction: ``(n, k)`` probabilities, or ``(n,)`` for regression."""
    if isinstance(teacher_outputs, Predictions):
        values = teacher_outputs.values.mean(axis=1)
    else:
        values = np.asarray(teacher_outputs, dtype=np.float64)
        if values.ndim == 3:  # (n_samples, n_members, n_outputs): average the members
            values = values.mean(axis=1)
    if values.shape[0] != n:
        raise ValueError(
            f"teacher_outputs must have {n} rows like X, however: "
            f"teacher_outputs.shape={values.shape}"
        )
    if not is_classification(task):
        return torch.as_tensor(values.reshape(n, -1)[:, 0], dtype=torch.float32)
    if values.ndim != 2 or np.any(values < 0) or not np.allclose(values.sum(axis=1), 1, atol=1e-3):
        raise ValueError(
            "teacher_outputs must be probabilities (n_samples, n_classes) summing to 1 per row, "
            f"however: shape={values.shape}"
        )
    return torch.as_tensor(values, dtype=torch.float32)


def distillation_loss(
    out: torch.Tensor,
    teacher: torch.Tensor,
    y: torch.Tensor | None,
    *,
    task: str,
    alpha: float,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``alpha * teacher term + (1 - alpha) * label term`` for one batch.

    Classification: the teacher term is ``T**2 * KL(teacher_T || student_T)`` where ``_T``
    softens with temperature ``T`` (the teacher's probabilities via ``softmax(log p / T)``;
    ``T**2`` keeps the gradient scale independent of ``T``, Hinton et al. 2015); the label
    term is cross-entropy. Regression: both terms are mean squared errors.

    Parameters
    ----------
    out : Tensor of shape (B, n_outputs)
        Student outputs (logits for classification).
    teacher : Tensor of shape (B, n_classes) or (B,)
        Teacher probabilities, or the teacher's mean for regression.
    y : Tensor of shape (B,) or None
        Labels (class codes); may be None when ``alpha == 1``.
    """
    if is_classification(task):
        t = float(temperature)
        log_q = F.log_softmax(out / t, dim=-1)
        p = teacher if t == 1.0 else torch.softmax(torch.log(teacher.clamp_min(1e-12)) / t, -1)
        soft = F.kl_div(log_q, p, reduction="batchmean") * t * t
    else:
        soft = F.mse_loss(out.reshape(len(teacher), -1)[:, 0], teacher)
    if alpha >= 1.0:
        return soft
    hard = supervised_loss(out, y, task)
    return alpha * soft + (1.0 - alpha) * hard if alpha > 0 else hard


@dataclass
class DistillResult:
    """A trained student and its training record.

    Attributes
    ----------
    student : nn.Module
        The student, holding its best weights (by validation loss when validation was given,
        else the last epoch's).
    state : dict
        A copy of those weights.
    history : list of float
        Training loss per epoch.
    val_history : list of float
        Validation label loss per epoch (cross-entropy or MSE), empty without validation.
    best_epoch : int
    """

    student: nn.Module
    state: StateDict
    history: list[float] = field(default_factory=list)
    val_history: list[float] = field(default_factory=list)
    best_epoch: int = -1


def distill(
    student: nn.Module,
    X,
    teacher_outputs,
    y=None,
    *,
    task: str,
    alpha: float = 0.9,
    temperature: float = 1.0,
    epochs: int = 30,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    batch_size: int = 128,
    validation: tuple | None = None,
    patience: int = 5,
    random_state: int = 0,
) -> DistillResult:
    """Train ``student`` (in place) on the teacher's averaged outputs and the labels.

    Parameters
    ----------
    student : nn.Module
        Maps ``(B, ...)`` to ``(B, n_outputs)``: logits over the teacher's classes, or one
        value for regression.
    X : array-like of shape (n_samples, ...)
    teacher_outputs : array-like or Predictions
        The teacher on ``X``: averaged probabilities ``(n_samples, n_classes)`` (or the
        teacher's mean ``(n_samples,)`` for regression); an array ``(n_samples, n_members,
        n_outputs)`` or a :class:`~ensemblex.predictions.Predictions` is averaged over members.
    y : array-like of shape (n_samples,), optional
        Labels: class codes ``0..k-1`` in the teacher's column order. Needed when
        ``alpha < 1``.
    task : {"regression", "binary", "multiclass"}
    alpha : float in [0, 1]
        Weight of the teacher term; ``1`` learns from the teacher only, ``0`` from labels only.
    temperature : float > 0
        Softens teacher and student alike (classification).
    epochs, lr, weight_decay, batch_size
        AdamW training settings.
    validation : (X_val, y_val), optional
        Keeps the epoch with the lowest label loss on these rows, stopping after
        ``patience`` epochs without improvement.
    random_state : int
        Seeds the batch order and dropout (the global RNG is left as it was).

    Returns
    -------
    DistillResult

    Raises
    ------
    ValueError
        When no epoch reaches a finite validation loss, or, without validation, when an
        epoch's training loss is not finite (lower ``lr``).
    """
    check_task(task)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], however: alpha={alpha}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, however: temperature={temperature}")
    if alpha < 1.0 and y is None:
        raise ValueError(f"y is needed when alpha < 1, however: alpha={alpha}, y=None")
    if int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1, however: epochs={epochs}")
    X = as_inputs(X)
    teacher = _teacher_targets(teacher_outputs, task, len(X))
    targets = as_targets(y, task, len(X)) if y is not None else torch.zeros(len(X))
    if is_classification(task) and y is not None and targets.max() >= teacher.shape[1]:
        raise ValueError(
            f"y must hold codes below the teacher's {teacher.shape[1]} classes, however: "
            f"max(y)={int(targets.max())}"
        )
    validation_loss = None
    if validation is not None:
        X_val = as_inputs(validation[0])
        y_val = as_targets(validation[1], task, len(X_val))

        def validation_loss() -> float:
            return float(supervised_loss(student(X_val), y_val, task))

    def batch_loss(rows: torch.Tensor) -> torch.Tensor:
        out = student(X[rows])
        return distillation_loss(
            out, teacher[rows], targets[rows], task=task, alpha=alpha, temperature=temperature
        )

    result = train(
        student,
        batch_loss,
        len(X),
        max_epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        random_state=random_state,
        validation_loss=validation_loss,
        patience=patience,
    )
    return DistillResult(
        student,
        clone_state(student),
        history=result.history,
        val_history=result.val_history,
        best_epoch=result.best_epoch,
    )


def flops_per_sample(module: nn.Module, x_example) -> float:
    """Floating-point operations of one forward pass, per row of ``x_example``.

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode` (a multiply-add counts as 2;
    matrix products and convolutions are counted, elementwise operations such as bias adds
    and activations are not). The module runs in eval mode without gradients.

    Parameters
    ----------
    module : nn.Module
    x_example : array-like or Tensor of shape (B, ...)
        A batch of inputs; the total is divided by ``B``.

    Examples
    --------
    >>> flops_per_sample(nn.Linear(10, 5), torch.zeros(3, 10))
    100.0
    """
    x = as_inputs(x_example)
    was_training = module.training
    module.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(x)
    module.train(was_training)
    return counter.get_total_flops() / len(x)


def share_of_gain_kept(student: float, single: float, ensemble: float) -> float:
    """``(student - single) / (ensemble - single)``: the share of the ensemble's gain kept.

    All three must be the same metric on the same rows; the direction does not matter
    (accuracy, higher is better, or log-loss, lower is better), because the sign of the gain
    cancels. ``1`` means the student matches the ensemble, ``0`` that it is no better than the
    single model, a negative value that it is worse than the single model, above ``1`` that it
    beats the ensemble.

    Examples
    --------
    >>> round(share_of_gain_kept(student=0.95, single=0.90, ensemble=0.96), 3)  # accuracy
    0.833
    >>> round(share_of_gain_kept(student=0.30, single=0.40, ensemble=0.20), 3)  # log-loss
    0.5
    """
    gain = float(ensemble) - float(single)
    if gain == 0.0 or not np.isfinite(gain):
        raise ValueError(
            "ensemble and single must differ (no gain to share), however: "
            f"ensemble={ensemble}, single={single}"
        )
    return (float(student) - float(single)) / gain
