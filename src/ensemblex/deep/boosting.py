"""Neural boosting: small MLPs fitted one after another on the loss gradient of the ensemble so
far (GrowNet, Badirli et al. 2020), scikit-learn style.

The model's output (standardised target, or class logits) is

    F_T(x) = F_0 + learning_rate * (rho_1 f_1(x) + ... + rho_T f_T(x))

with ``F_0`` the mean target (0 once standardised) or the log class priors. Stage ``t`` trains
a fresh MLP ``f_t`` with the previous stages frozen:

- regression: mean squared error to the residual ``y - F_{t-1}(x)`` (the negative gradient of
  the squared loss);
- classification (binary and multiclass, softmax cross-entropy): a Newton step, as GrowNet.
  With ``g = softmax(F) - onehot(y)`` and the diagonal Hessian ``h = p (1 - p)``, the MLP
  minimises ``mean_rows sum_k (h f_k^2 / 2 + c g f_k)``, a weighted least squares fit of
  ``f_k = -c g_k / h_k``; ``c = (K - 1) / K`` is Friedman's correction for the diagonal
  Hessian of a softmax (with two classes it makes the step on the logit difference the exact
  Newton step).

With ``line_search`` (the default) the trained ``f_t`` is then scaled by the multiplier
``rho_t >= 0`` that minimises the training loss of ``F_{t-1} + rho f_t`` (Friedman's line
search), and added as ``learning_rate * rho_t * f_t``: the training loss never rises.

Each stage trains for at most ``epochs_per_stage`` epochs and keeps the epoch whose ensemble
``F_{t-1} + learning_rate f_t`` has the lowest validation loss (``patience`` epochs without
improvement end it). The stages stop after ``n_iter_no_change`` stages without a better
validation loss, and the model is cut back to the best prefix. The validation rows are a
``validation_fraction`` of the training rows drawn with ``random_state``.

``pass_features=True`` also feeds stage ``t`` the last hidden layer of stage ``t - 1`` (frozen),
as GrowNet does. ``corrective_epochs > 0`` runs GrowNet's fully-corrective step: after every
stage, all stages are fine-tuned jointly on the true loss for a few epochs.

As a member of ``P`` the boosted model is **one** column (``ensemble_size == 1``): the stage
prefixes are nested approximations of one model, not independent members, so averaging or
stacking them as if they were would double count. :meth:`staged_predict` gives the prefixes
for a learning curve or an early-exit study.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ensemblex.deep.base import (
    DeepMembersBase,
    MeanClassifierMixin,
    MeanRegressorMixin,
    training_arrays,
)
from ensemblex.deep.batched import BatchedMLP
from ensemblex.deep.training import clone_state, train

# lower bound of the Hessian p (1 - p): rows the ensemble already gets right with near
# certainty would otherwise ask for unbounded Newton steps
_MIN_HESSIAN = 1e-3


# ---------------------------------------------------------------- the model
class BoostedMLP(nn.Module):
    """Stages of MLPs whose scaled outputs add up to one prediction.

    Each stage is a one-member :class:`~ensemblex.deep.batched.BatchedMLP`; with
    ``pass_features`` stage ``t > 0`` reads ``[x, z_{t-1}(x)]``, ``z`` being stage ``t - 1``'s
    last hidden layer. Buffers: ``init`` ``(d_out,)`` (the output before any stage) and
    ``steps`` ``(n_stages,)`` (each stage's multiplier, the shrinkage).

    Input: ``(B, d_in)``. Output of :meth:`forward`: ``(B, d_out)``.

    Examples
    --------
    >>> model = BoostedMLP(3, 4, 2, hidden=(8,), seed=0)
    >>> model(torch.ones(5, 4)).shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        n_stages: int,
        d_in: int,
        d_out: int,
        hidden: tuple[int, ...] = (64,),
        pass_features: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        self.pass_features = bool(pass_features)
        stages = []
        for t in range(int(n_stages)):
            width = d_in + (hidden[-1] if pass_features and t > 0 else 0)
            stages.append(BatchedMLP(1, width, d_out, tuple(hidden), 0.0, seed + t))
        self.stages = nn.ModuleList(stages)
        self.register_buffer("init", torch.zeros(d_out))
        self.register_buffer("steps", torch.zeros(int(n_stages)))

    @staticmethod
    def stage_forward(stage: BatchedMLP, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One stage's output ``(B, d_out)`` and last hidden layer ``(B, h)``; input ``(B, d)``."""
        h = x
        for layer in stage.layers[:-1]:
            h = torch.relu(layer(h))  # (1, B, width)
        return stage.layers[-1](h)[0], h[0]

    def stage_inputs(self, t: int, x: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """What stage ``t`` reads: ``x``, or ``[x, features]`` with ``pass_features``."""
        if self.pass_features and t > 0:
            return torch.cat([x, features], dim=-1)
        return x

    def staged(self, x: torch.Tensor):
        """Yield the output ``(B, d_out)`` after each stage (its prefix's prediction)."""
        out, features = self.init.expand(x.shape[0], -1), None
        for t, stage in enumerate(self.stages):
            if self.pass_features:
                f, features = self.stage_forward(stage, self.stage_inputs(t, x, features))
            else:
                f = stage(x)[0]  # BatchedMLP's tiled inference path under no_grad
            out = out + self.steps[t] * f
            yield out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.init.expand(x.shape[0], -1)
        for out in self.staged(x):  # noqa: B007 (the last prefix is the model)
            pass
        return out


# ---------------------------------------------------------------- losses
def ensemble_loss(out: torch.Tensor, y: torch.Tensor, *, classifier: bool) -> torch.Tensor:
    """The boosted model's loss: cross-entropy on logits ``(B, k)`` or MSE on ``out[:, 0]``."""
    if classifier:
        return F.cross_entropy(out, y)
    return F.mse_loss(out[:, 0], y)


def newton_targets(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient ``c g`` and diagonal Hessian ``h`` of the softmax cross-entropy, ``(n, k)``
    each, at ``logits`` ``(n, k)`` for class codes ``y`` ``(n,)`` (``c = (k - 1) / k``).

    Examples
    --------
    >>> g, h = newton_targets(torch.zeros(1, 2), torch.tensor([1]))
    >>> g.tolist(), h.tolist()
    ([[0.25, -0.25]], [[0.25, 0.25]])
    """
    k = logits.shape[1]
    p = torch.softmax(logits, dim=1)
    g = (p - F.one_hot(y, k).to(p.dtype)) * ((k - 1) / k)
    return g, (p * (1 - p)).clamp_min(_MIN_HESSIAN)


def newton_loss(f: torch.Tensor, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``mean_rows sum_k (h f^2 / 2 + g f)``: minimal at the Newton step ``f = -g / h``."""
    return (0.5 * h * f * f + g * f).sum(dim=1).mean()


def line_search(base: torch.Tensor, f: torch.Tensor, y: torch.Tensor, *, classifier: bool) -> float:
    """The multiplier ``rho >= 0`` minimising the loss of ``base + rho * f`` (float64).

    Input: the ensemble's output ``base`` and a stage's output ``f``, ``(n, d_out)`` each, and
    the targets ``y`` ``(n,)``. The squared loss has the closed form ``<r, f> / <f, f>``
    (``r = y - base``); the cross-entropy, convex in ``rho``, takes Newton steps from 0, each
    halved until the loss falls, so the result never has a higher loss than ``rho = 0``.

    Examples
    --------
    >>> line_search(torch.zeros(3, 1), torch.tensor([[1.0], [2.0], [0.0]]),
    ...             torch.tensor([2.0, 4.0, 5.0]), classifier=False)
    2.0
    """
    base, f = base.double(), f.double()
    if not classifier:
        r, f = y.double() - base[:, 0], f[:, 0]
        norm = float(f @ f)
        return max(float(r @ f), 0.0) / norm if norm > 0 else 0.0
    onehot = F.one_hot(y, f.shape[1]).double()

    def loss(rho: float) -> float:
        return float(F.cross_entropy(base + rho * f, y))

    rho, current = 0.0, loss(0.0)
    for _ in range(20):
        p = torch.softmax(base + rho * f, dim=1)
        slope = float(((p - onehot) * f).sum(dim=1).mean())
        curvature = float(((p * f * f).sum(dim=1) - (p * f).sum(dim=1) ** 2).mean())
        if curvature <= 1e-12:
            break
        candidate = max(rho - slope / curvature, 0.0)
        for _ in range(30):  # Newton may overshoot a flat logistic tail: halve the step
            value = loss(candidate)
            if value <= current:
                break
            candidate = (candidate + rho) / 2
        else:
            break
        if abs(candidate - rho) < 1e-8:
            rho, current = candidate, value
            break
        rho, current = candidate, value
    return rho


# ---------------------------------------------------------------- the estimator
class _NeuralBoosting(DeepMembersBase):
    _member_prefix = "boosted"

    def __init__(
        self,
        n_stages=20,
        hidden=(64,),
        epochs_per_stage=20,
        learning_rate=0.3,
        line_search=True,
        lr=1e-3,
        batch_size=256,
        weight_decay=1e-4,
        patience=3,
        n_iter_no_change=3,
        validation_fraction=0.1,
        pass_features=False,
        corrective_epochs=0,
        random_state=0,
        n_threads=None,
    ):
        self.n_stages = n_stages
        self.hidden = hidden
        self.epochs_per_stage = epochs_per_stage
        self.learning_rate = learning_rate
        self.line_search = line_search
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.patience = patience
        self.n_iter_no_change = n_iter_no_change
        self.validation_fraction = validation_fraction
        self.pass_features = pass_features
        self.corrective_epochs = corrective_epochs
        self.random_state = random_state
        self.n_threads = n_threads

    @property
    def ensemble_size(self) -> int:
        """Columns :meth:`predict_members` returns: 1, the boosted model (module docstring)."""
        return 1

    # ------------------------------------------------------------ checks and data
    def _check_params(self) -> None:
        for name in ("n_stages", "epochs_per_stage", "batch_size", "patience", "n_iter_no_change"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, however: {name}={value!r}")
        value = self.corrective_epochs
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise ValueError(
                f"corrective_epochs must be an int >= 0, however: corrective_epochs={value!r}"
            )
        hidden = self.hidden
        if (
            not isinstance(hidden, (tuple, list))
            or not hidden
            or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in hidden)
        ):
            raise ValueError(
                f"hidden must be a non-empty tuple of positive ints, however: hidden={hidden!r}"
            )
        for name in ("learning_rate", "lr"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a number > 0, however: {name}={value!r}")
        if not 0 <= self.weight_decay < np.inf:
            raise ValueError(
                f"weight_decay must be >= 0, however: weight_decay={self.weight_decay!r}"
            )

    def _inputs(self, X) -> torch.Tensor:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X must have shape (n_samples, {self.n_features_in_}), however: X.shape={X.shape}"
            )
        return torch.from_numpy((X - self.x_mean_) / self.x_scale_)

    def _build(self, n_stages: int, n_out: int) -> BoostedMLP:
        return BoostedMLP(
            n_stages,
            self.n_features_in_,
            n_out,
            tuple(int(v) for v in self.hidden),
            bool(self.pass_features),
            int(self.random_state),
        )

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> float:
        return float(ensemble_loss(out, y, classifier=self._classifier))

    # ------------------------------------------------------------ fit
    def _fit(self, X, y):
        X, y = training_arrays(X, y)
        self._check_params()
        targets, train_idx, val_idx = self._targets_and_split(X, y)
        std = X.std(axis=0)
        self.x_mean_, self.x_scale_ = X.mean(axis=0), np.where(std > 0, std, 1.0).astype(np.float32)
        inputs = self._inputs(X)
        data = {
            "train": (inputs[train_idx], targets.values[train_idx]),
            "val": (inputs[val_idx], targets.values[val_idx]),
        }
        torch.manual_seed(self.random_state)  # DeepMembersBase.fit forks the global generator
        n_out = len(self.classes_) if self._classifier else 1
        model = self._build(int(self.n_stages), n_out)
        if self._classifier:  # F_0: the log class priors of the training rows
            counts = torch.bincount(data["train"][1], minlength=n_out).double()
            model.init.copy_(torch.log(counts.clamp_min(1) / counts.sum()).float())
        self.model_ = model
        self._boost(model, data)
        return self

    def _boost(self, model: BoostedMLP, data: dict) -> None:
        """Add stages while the validation loss improves; keep the best prefix."""
        outs = {k: model.init.expand(len(x), -1).clone() for k, (x, _) in data.items()}
        features = dict.fromkeys(data)
        self.train_loss_ = [self._loss(outs["train"], data["train"][1])]
        self.validation_loss_ = [self._loss(outs["val"], data["val"][1])]
        self.stage_epochs_ = []
        best, waited = 0, 0
        for t in range(int(self.n_stages)):
            model.steps[t] = float(self.learning_rate)
            epochs = self._fit_stage(model, t, data, outs, features)
            with torch.no_grad():
                new = {  # the stage's output and last hidden layer on both splits
                    key: model.stage_forward(
                        model.stages[t], model.stage_inputs(t, x, features[key])
                    )
                    for key, (x, _) in data.items()
                }
            if self.line_search:
                rho = line_search(
                    outs["train"], new["train"][0], data["train"][1], classifier=self._classifier
                )
                model.steps[t] = float(self.learning_rate) * rho
            if self.corrective_epochs and t > 0:
                self._corrective_step(model, t, data)
            with torch.no_grad():
                for key, (x, _) in data.items():
                    if self.corrective_epochs:  # every stage moved: recompute from the start
                        outs[key], features[key] = list(_prefixes(model, x, t + 1))[-1]
                    else:
                        f, features[key] = new[key]
                        outs[key] = outs[key] + model.steps[t] * f
            self.stage_epochs_.append(epochs)
            self.train_loss_.append(self._loss(outs["train"], data["train"][1]))
            self.validation_loss_.append(self._loss(outs["val"], data["val"][1]))
            if self.validation_loss_[-1] < self.validation_loss_[best] - 1e-6:
                best, waited = t + 1, 0
                if self.corrective_epochs:  # later corrective steps move these stages
                    best_state = clone_state(model)
            else:
                waited += 1
                if waited >= int(self.n_iter_no_change):
                    break
        if self.corrective_epochs and best > 0:
            model.load_state_dict(best_state)
        self.n_stages_ = best
        self.best_validation_loss_ = self.validation_loss_[best]
        del model.stages[best:]
        model.steps = model.steps[:best].clone()
        model.eval()

    def _fit_stage(self, model: BoostedMLP, t: int, data: dict, outs: dict, features: dict) -> int:
        """Train stage ``t`` with the earlier stages frozen; returns its epochs."""
        stage, step = model.stages[t], model.steps[t]
        x_tr, y_tr = data["train"]
        x_val, y_val = data["val"]
        in_tr = model.stage_inputs(t, x_tr, features["train"])
        in_val = model.stage_inputs(t, x_val, features["val"])
        base_tr, base_val = outs["train"], outs["val"]
        if self._classifier:
            g, h = newton_targets(base_tr, y_tr)

            def batch_loss(rows: torch.Tensor) -> torch.Tensor:  # rows (1, B)
                return newton_loss(stage(in_tr[rows])[0], g[rows[0]], h[rows[0]])
        else:
            residual = y_tr - base_tr[:, 0]

            def batch_loss(rows: torch.Tensor) -> torch.Tensor:  # rows (1, B)
                return F.mse_loss(stage(in_tr[rows])[0, :, 0], residual[rows[0]])

        result = train(
            stage,
            batch_loss,
            len(x_tr),
            max_epochs=int(self.epochs_per_stage),
            batch_size=int(self.batch_size),
            lr=float(self.lr),
            weight_decay=float(self.weight_decay),
            random_state=int(self.random_state) + t,
            seed_global=False,
            n_members=1,  # the batch order of a one-member DeepEnsemble (the same first stage)
            validation_loss=lambda: self._loss(base_val + step * stage(in_val)[0], y_val),
            patience=int(self.patience),
        )
        return result.n_epochs

    def _corrective_step(self, model: BoostedMLP, t: int, data: dict) -> None:
        """GrowNet's fully-corrective step: stages ``0..t`` fine-tuned jointly on the true loss,
        keeping the best of ``corrective_epochs`` epochs by validation loss."""
        (x_tr, y_tr), (x_val, y_val) = data["train"], data["val"]
        stages = nn.ModuleList(model.stages[: t + 1])

        def output(x: torch.Tensor) -> torch.Tensor:
            return list(_prefixes(model, x, t + 1))[-1][0]

        train(
            stages,
            lambda rows: ensemble_loss(output(x_tr[rows]), y_tr[rows], classifier=self._classifier),
            len(x_tr),
            max_epochs=int(self.corrective_epochs),
            batch_size=int(self.batch_size),
            lr=float(self.lr),
            weight_decay=float(self.weight_decay),
            random_state=int(self.random_state) + 10_000 + t,
            seed_global=False,
            validation_loss=lambda: self._loss(output(x_val), y_val),
            patience=int(self.corrective_epochs),
        )

    # ------------------------------------------------------------ predict
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit first")

    def _outputs(self, raw: torch.Tensor) -> np.ndarray:
        """Raw outputs ``(n, d_out)`` as predictions: probabilities or target values."""
        if self._classifier:  # softmax in float64: rows sum to one to numpy's tolerance
            return torch.softmax(raw.double(), dim=-1).numpy()
        return raw.double().numpy() * self.y_scale_ + self.y_mean_

    def staged_outputs(self, X):
        """Yield the prediction of each stage prefix, ``(n_samples, n_outputs)``
        (probabilities or target values), from 1 stage up to ``n_stages_``."""
        self._check_fitted()
        inputs = self._inputs(X)
        self.model_.eval()
        with torch.no_grad():
            for out in self.model_.staged(inputs):
                yield self._outputs(out)

    def predict_members(self, X) -> np.ndarray:
        """The boosted model as one member: ``(n_samples, 1, n_outputs)``."""
        self._check_fitted()
        self.model_.eval()
        with torch.no_grad():
            return self._outputs(self.model_(self._inputs(X)))[:, None, :]

    # ------------------------------------------------------------ serialization hooks
    def _fitted_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        fitted = {
            "n_features_in": self.n_features_in_,
            "n_stages": self.n_stages_,
            "classes": self.classes_.tolist() if self._classifier else None,
            "y_mean": getattr(self, "y_mean_", None),
            "y_scale": getattr(self, "y_scale_", None),
        }
        return fitted, {"x_mean": self.x_mean_, "x_scale": self.x_scale_}

    def _restore(self, fitted: dict, arrays: dict[str, np.ndarray]) -> None:
        self.n_features_in_ = int(fitted["n_features_in"])
        self.n_stages_ = int(fitted["n_stages"])
        self.x_mean_ = arrays["x_mean"].astype(np.float32)
        self.x_scale_ = arrays["x_scale"].astype(np.float32)
        n_out = 1
        if self._classifier:
            self.classes_ = np.asarray(fitted["classes"])
            n_out = len(self.classes_)
        else:
            self.y_mean_, self.y_scale_ = fitted["y_mean"], fitted["y_scale"]
        self.model_ = self._build(self.n_stages_, n_out)


def _prefixes(model: BoostedMLP, x: torch.Tensor, n: int):
    """Yield ``(output (B, d_out), last hidden layer (B, h))`` after stages ``1..n`` of
    ``model``, with autograd (the training path)."""
    out, features = model.init.expand(x.shape[0], -1), None
    for t in range(n):
        f, features = model.stage_forward(model.stages[t], model.stage_inputs(t, x, features))
        out = out + model.steps[t] * f
        yield out, features


class NeuralBoostingRegressor(MeanRegressorMixin, _NeuralBoosting):
    """Gradient boosting of small MLPs on the squared loss (see the module docstring).

    Parameters
    ----------
    n_stages : int, default 20
        Most stages (weak learners); early stopping keeps the best prefix, ``n_stages_``.
    hidden : tuple of int, default (64,)
        Hidden layer widths of every stage's MLP.
    epochs_per_stage : int, default 20
        Most epochs of one stage.
    learning_rate : float, default 0.3
        Shrinkage: each stage's output is added times this (times its line search's
        multiplier).
    line_search : bool, default True
        Scale each stage's output by the multiplier that minimises the training rows' loss
        along it (Friedman's line search), so no stage raises the training loss.
    lr, weight_decay, batch_size : float, float, int
        AdamW's step size and weight decay, and the minibatch size, for every stage.
    patience : int, default 3
        Epochs without a better validation loss that end a stage.
    n_iter_no_change : int, default 3
        Stages without a better validation loss that end boosting.
    validation_fraction : float, default 0.1
        Share of the training rows held out for both early stoppings.
    pass_features : bool, default False
        Stage ``t`` also reads stage ``t - 1``'s last hidden layer (GrowNet).
    corrective_epochs : int, default 0
        Epochs of GrowNet's fully-corrective step after each stage (0: none).
    random_state : int, default 0
    n_threads : int, optional
        Torch threads during ``fit``.

    Attributes
    ----------
    n_stages_ : int
        Stages kept.
    train_loss_, validation_loss_ : list of float
        Loss (MSE of the standardised target, or log-loss) after 0, 1, ... stages, on the
        training and the validation rows.
    stage_epochs_ : list of int
        Epochs each stage trained.
    validation_rows_ : ndarray
        Rows held out for early stopping.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(200, 3))
    >>> model = NeuralBoostingRegressor(n_stages=3, hidden=(8,), epochs_per_stage=2)
    >>> model.fit(X, X[:, 0] ** 2).predict_members(X[:4]).shape
    (4, 1, 1)
    """

    def staged_predict(self, X):
        """Yield the prediction ``(n_samples,)`` after each kept stage."""
        for values in self.staged_outputs(X):
            yield values[:, 0]


class NeuralBoostingClassifier(MeanClassifierMixin, _NeuralBoosting):
    """Gradient boosting of small MLPs on the softmax cross-entropy with Newton steps
    (binary and multiclass); parameters and attributes as :class:`NeuralBoostingRegressor`.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(200, 3))
    >>> model = NeuralBoostingClassifier(n_stages=2, hidden=(8,), epochs_per_stage=2)
    >>> model.fit(X, X[:, 0] > 0).predict_proba(X[:4]).shape
    (4, 2)
    """

    def staged_predict_proba(self, X):
        """Yield the probabilities ``(n_samples, n_classes)`` after each kept stage."""
        yield from self.staged_outputs(X)
