"""Scores for predictions of shape ``(n_samples, n_outputs)``, one at a time or many at once.

``Metric.score`` calls scikit-learn. ``Metric.score_batch`` scores many candidate
predictions ``(n_candidates, n_samples, n_outputs)`` in one vectorised step: greedy
selection and best-member search score every member or candidate per iteration, and
scikit-learn's metrics take one prediction per call (validation and label handling each
time), which made AutoGluon's selection loop dominate its fit time. The batched versions are
written here for that reason and are tested to agree with scikit-learn to 1e-10.

Conventions: regression ``y`` is float and predictions have one output; classification
``y`` holds integer codes ``0..n_classes-1`` and predictions are probabilities over all
classes (binary: two columns).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn import metrics as skm

_EPS = np.finfo(np.float64).eps
# Bytes of candidate predictions materialised at once by the generic mixture scorer.
_CHUNK_BYTES = 64 * 2**20


def _weights(sample_weight, n: int) -> np.ndarray:
    if sample_weight is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(sample_weight, dtype=float)
    return w / w.sum()


# ---------------------------------------------------------------- batched scores
# Each takes y (n,), candidates C (c, n, k), normalised weights w (n,) and returns (c,).
def _rmse(y, C, w):
    return np.sqrt(((C[..., 0] - y) ** 2) @ w)


def _mae(y, C, w):
    return np.abs(C[..., 0] - y) @ w


def _r2(y, C, w):
    total = ((y - y @ w) ** 2) @ w
    return 1.0 - (((C[..., 0] - y) ** 2) @ w) / total


def _true_class(y, C):
    if C.shape[2] == 1 and not y.any():  # Metric.scored_part's one column: a view
        return C[..., 0]
    return np.take_along_axis(C, y[None, :, None], axis=2)[..., 0]


def _log_loss_true(p_true, w):
    return -np.log(np.clip(p_true, _EPS, 1 - _EPS)) @ w


def _log_loss(y, C, w):
    return _log_loss_true(_true_class(y, C), w)


def _accuracy(y, C, w):
    return (C.argmax(axis=2) == y) @ w


def _balanced_accuracy(y, C, w):
    k = C.shape[2]
    present = np.bincount(y, weights=w, minlength=k) > 0
    correct = C.argmax(axis=2) == y  # (c, n)
    per_class = np.stack(
        [(correct[:, y == j] @ w[y == j]) / w[y == j].sum() for j in np.flatnonzero(present)],
        axis=1,
    )
    return per_class.mean(axis=1)


def _brier(y, C, w):
    if C.shape[2] == 2:  # scikit-learn scores binary Brier on the positive class alone
        return ((C[..., 1] - y) ** 2) @ w
    onehot = np.eye(C.shape[2])[y]
    return ((C - onehot) ** 2).sum(axis=2) @ w


def _auc_rows(scores: np.ndarray, positive: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted ROC AUC of each row of ``scores`` (r, n) against boolean ``positive`` (n,).

    The weighted Mann-Whitney statistic, ties counted as one half, all rows at once.
    """
    r, n = scores.shape
    order = np.argsort(scores, axis=1, kind="stable")
    s = np.take_along_axis(scores, order, axis=1)
    pos_w = np.where(positive, w, 0.0)[order]
    neg_w = np.where(positive, 0.0, w)[order]
    new_group = np.concatenate([np.ones((r, 1), bool), np.diff(s, axis=1) != 0], axis=1)
    group = np.cumsum(new_group, axis=1) - 1 + (np.arange(r) * n)[:, None]
    pos_g = np.bincount(group.ravel(), weights=pos_w.ravel(), minlength=r * n).reshape(r, n)
    neg_g = np.bincount(group.ravel(), weights=neg_w.ravel(), minlength=r * n).reshape(r, n)
    neg_below = np.cumsum(neg_g, axis=1) - neg_g
    auc = (pos_g * (neg_below + 0.5 * neg_g)).sum(axis=1)
    return auc / (w[positive].sum() * w[~positive].sum())


def _roc_auc(y, C, w):
    k = C.shape[2]
    if k == 2:
        return _auc_rows(C[..., 1], y == 1, w)
    # One-vs-rest, macro average over classes (scikit-learn's multi_class="ovr").
    per_class = [_auc_rows(C[..., j], y == j, w) for j in range(k)]
    return np.mean(per_class, axis=0)


# ---------------------------------------------------------------- scikit-learn scores
def _labels(pred):
    return pred.argmax(axis=1)


def _sk_log_loss(y, pred, sw):
    return skm.log_loss(y, pred, sample_weight=sw, labels=np.arange(pred.shape[1]))


def _sk_roc_auc(y, pred, sw):
    if pred.shape[1] == 2:
        return skm.roc_auc_score(y, pred[:, 1], sample_weight=sw)
    return skm.roc_auc_score(
        y, pred, sample_weight=sw, multi_class="ovr", labels=np.arange(pred.shape[1])
    )


def _sk_brier(y, pred, sw):
    if pred.shape[1] == 2:
        return skm.brier_score_loss(y, pred[:, 1], sample_weight=sw)
    return skm.brier_score_loss(y, pred, sample_weight=sw, labels=np.arange(pred.shape[1]))


# ---------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Metric:
    """A named score with a scikit-learn implementation and a batched one.

    Parameters
    ----------
    name : str
        Name used on the command line and in reports.
    greater_is_better : bool
        Orientation of the score.
    task : str
        ``"regression"`` or ``"classification"``.
    needs : str
        ``"value"`` (regression), ``"proba"`` or ``"label"`` (argmax of probabilities).
    """

    name: str
    greater_is_better: bool
    task: str
    needs: str
    sklearn_score: Callable
    batch_score: Callable

    def score(self, y, pred, sample_weight=None) -> float:
        """Score one prediction ``(n_samples, n_outputs)`` with scikit-learn."""
        pred = np.asarray(pred, dtype=float)
        if self.task == "regression":
            return float(self.sklearn_score(y, pred[:, 0], sample_weight))
        if self.needs == "label":
            return float(self.sklearn_score(y, _labels(pred), sample_weight))
        return float(self.sklearn_score(y, pred, sample_weight))

    def score_batch(self, y, candidates, sample_weight=None) -> np.ndarray:
        """Score candidates ``(n_candidates, n_samples, n_outputs)``; output (n_candidates,)."""
        return self.batch_score(np.asarray(y), candidates, _weights(sample_weight, len(y)))

    def loss(self, y, pred, sample_weight=None) -> float:
        """The score oriented so that lower is better."""
        s = self.score(y, pred, sample_weight)
        return -s if self.greater_is_better else s

    def loss_batch(self, y, candidates, sample_weight=None) -> np.ndarray:
        """Batched :meth:`loss`."""
        s = self.score_batch(y, candidates, sample_weight)
        return -s if self.greater_is_better else s

    def scored_part(self, y, values) -> tuple[np.ndarray, np.ndarray]:
        """The part of predictions ``values`` (n, m, k) this score reads, with labels for it.

        Log-loss reads only each row's true-class probability: ``(values[..., y] as
        (n, m, 1), zeros)``, on which every mixture scores the same to the bit (mixtures are
        linear) at 1/k of the work; other metrics get ``(values, y)`` back.
        """
        y = np.asarray(y)
        if self.batch_score is not _log_loss or values.ndim != 3 or values.shape[2] == 1:
            return values, y
        true = np.take_along_axis(values, y.astype(np.intp)[:, None, None], axis=2)
        return true, np.zeros(len(y), dtype=np.intp)

    def mixture_losses(self, y, members, sample_weight=None) -> Callable:
        """Prepare to score every mixture ``scale * (base + members[:, j])`` at once.

        Input: ``y`` (n,), ``members`` (n, m, k). Returns ``losses(base, scale)`` taking
        ``base`` (n, k) and giving the loss of each of the m mixtures, shape (m,). This is
        the inner step of greedy selection, where ``base`` is the running sum of the members
        chosen so far; per-member work is done once here, not at every step.
        """
        y = np.asarray(y)
        w = _weights(sample_weight, len(y))
        if self.name == "log_loss":
            return _log_loss_mixtures(y, members, w)
        if self.name in ("rmse", "r2"):
            return _squared_error_mixtures(y, members, w, r2=self.name == "r2")
        n, m, k = members.shape
        step = max(1, _CHUNK_BYTES // (8 * n * k))
        sign = -1.0 if self.greater_is_better else 1.0

        def losses(base, scale):
            out = np.empty(m)
            for start in range(0, m, step):
                C = scale * (base[None] + members[:, start : start + step].transpose(1, 0, 2))
                out[start : start + step] = self.batch_score(y, C, w)
            return sign * out

        return losses


def _log_loss_mixtures(y, members, w):
    """Only the true class's probability enters the log-loss: one log per sample and member."""
    member_true = np.ascontiguousarray(
        np.take_along_axis(members, y[:, None, None], axis=2)[..., 0]
    )
    rows = np.arange(len(y))

    def losses(base, scale):
        t = base[rows, y][:, None] + member_true
        np.maximum(t, _EPS / scale, out=t)  # scikit-learn's clip of probabilities at eps
        np.log(t, out=t)
        return -(w @ t) - np.log(scale)

    return losses


def _squared_error_mixtures(y, members, w, r2: bool):
    """Mean squared error of each mixture from a matrix-vector product, by expanding
    sum w (r + scale * p_j)^2 with r = scale * base - y."""
    X = members[:, :, 0]
    member_sq = w @ (X * X)
    total = ((y - y @ w) ** 2) @ w

    def losses(base, scale):
        r = scale * base[:, 0] - y
        mse = (r * r) @ w + 2 * scale * ((w * r) @ X) + scale**2 * member_sq
        mse = np.maximum(mse, 0.0)
        return mse / total - 1.0 if r2 else np.sqrt(mse)

    return losses


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "rmse",
            False,
            "regression",
            "value",
            lambda y, p, sw: skm.root_mean_squared_error(y, p, sample_weight=sw),
            _rmse,
        ),
        Metric(
            "mae",
            False,
            "regression",
            "value",
            lambda y, p, sw: skm.mean_absolute_error(y, p, sample_weight=sw),
            _mae,
        ),
        Metric(
            "r2",
            True,
            "regression",
            "value",
            lambda y, p, sw: skm.r2_score(y, p, sample_weight=sw),
            _r2,
        ),
        Metric("log_loss", False, "classification", "proba", _sk_log_loss, _log_loss),
        Metric(
            "accuracy",
            True,
            "classification",
            "label",
            lambda y, p, sw: skm.accuracy_score(y, p, sample_weight=sw),
            _accuracy,
        ),
        Metric(
            "balanced_accuracy",
            True,
            "classification",
            "label",
            lambda y, p, sw: skm.balanced_accuracy_score(y, p, sample_weight=sw),
            _balanced_accuracy,
        ),
        Metric("roc_auc", True, "classification", "proba", _sk_roc_auc, _roc_auc),
        Metric("brier", False, "classification", "proba", _sk_brier, _brier),
    )
}


def get_metric(metric: str | Metric, task: str) -> Metric:
    """Resolve a metric name for ``task``; ``"auto"`` gives RMSE or log-loss.

    Examples
    --------
    >>> get_metric("auto", "binary").name
    'log_loss'
    """
    if isinstance(metric, Metric):
        resolved = metric
    elif metric == "auto":
        resolved = METRICS["rmse" if task == "regression" else "log_loss"]
    elif metric in METRICS:
        resolved = METRICS[metric]
    else:
        raise ValueError(
            f"metric must be 'auto' or one of {', '.join(METRICS)}, however: metric={metric!r}"
        )
    kind = "regression" if task == "regression" else "classification"
    if resolved.task != kind:
        raise ValueError(
            f"metric {resolved.name!r} is for {resolved.task}, however the task is {task!r}"
        )
    return resolved
