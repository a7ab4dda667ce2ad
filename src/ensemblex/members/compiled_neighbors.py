"""k-nearest-neighbour members in numpy, for serving a few rows at a time.

scikit-learn's ``KNeighborsClassifier.predict_proba`` pays about 1.5 ms per call on one churn
row (input validation, the pairwise-distance dispatcher, a thread pool), while the arithmetic
is one matrix-vector product over the training rows: 0.05 ms for 8,000 rows of 13 columns.
The twin answers up to :data:`MAX_ROWS` rows; larger batches go to scikit-learn, whose
chunked, parallel search wins there. A member is switched only after its twin gave the
member's own predictions on probe rows within :data:`TOLERANCE`. Neighbours are found from
``|x|^2 - 2 x.z + |z|^2`` as scikit-learn's brute force finds them; their distances are then
computed directly, so they may differ from scikit-learn's in the last bits. Rows with a tie
(within 1e-9) at the k-th neighbour, whose pick is scikit-learn's own, and rows with values
that are not finite, which it refuses, go to scikit-learn.
"""

from __future__ import annotations

import logging

import numpy as np

from ensemblex.members.base import one_column

log = logging.getLogger(__name__)

TOLERANCE = 1e-9
# Most rows a twin answers: its (rows x training rows) distance matrix stays small.
MAX_ROWS = 64


class NeighborsTwin:
    """A fitted ``KNeighborsClassifier`` / ``KNeighborsRegressor`` (Euclidean, uniform or
    distance weights, one output) as arrays: ``predict(Z)`` on encoded rows gives what the
    member's ``predict_model`` gives."""

    max_rows = MAX_ROWS

    def __init__(self, model, task: str):
        self.task = task
        self.X = np.ascontiguousarray(model._fit_X, dtype=np.float64)
        self.sq_norms = np.einsum("ij,ij->i", self.X, self.X)
        self.k = int(model.n_neighbors)
        self.distance_weights = model.weights == "distance"
        if task == "regression":
            self.y = np.asarray(model._y, dtype=np.float64).ravel()
        else:
            self.y = np.asarray(model._y, dtype=np.int64).ravel()
            self.n_classes = len(model.classes_)

    def predict(self, Z) -> np.ndarray | None:
        """Predictions ``(n, 1, n_outputs)``, or None for rows scikit-learn must answer:
        values that are not finite (it refuses them) and ties at the k-th neighbour (which
        of the tied rows it takes is its own choice)."""
        Z = np.asarray(Z, dtype=np.float64)
        if not np.isfinite(Z).all():
            return None
        out, tied = self.predict_untied(Z)
        return None if tied.any() else out

    def predict_untied(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictions for finite rows ``Z``, and which rows have a tie at the k-th
        neighbour (their predictions are not scikit-learn's to rely on)."""
        d2 = self.sq_norms[None, :] - 2.0 * (Z @ self.X.T)
        d2 += np.einsum("ij,ij->i", Z, Z)[:, None]
        np.maximum(d2, 0.0, out=d2)
        nearest = np.argpartition(d2, self.k - 1, axis=1)[:, : self.k]
        kth = np.take_along_axis(d2, nearest, axis=1).max(axis=1, keepdims=True)
        tied = (d2 <= kth * (1.0 + 1e-9) + 1e-12).sum(axis=1) > self.k
        # the chosen neighbours' distances computed directly: a row at distance 0 must get
        # exactly 0 (it alone carries the weight), which the expansion above rarely gives
        gap = Z[:, None, :] - self.X[nearest]
        weights = self._weights(np.sqrt(np.einsum("nkd,nkd->nk", gap, gap)))
        labels = self.y[nearest]
        if self.task == "regression":
            values = (labels * weights).sum(axis=1) / weights.sum(axis=1)
            return one_column(values, self.task), tied
        proba = np.zeros((len(Z), self.n_classes))
        rows = np.repeat(np.arange(len(Z)), self.k)
        np.add.at(proba, (rows, labels.ravel()), weights.ravel())
        total = proba.sum(axis=1, keepdims=True)
        total[total == 0.0] = 1.0
        return one_column(proba / total, self.task), tied

    def _weights(self, dist: np.ndarray) -> np.ndarray:
        if not self.distance_weights:
            return np.ones_like(dist)
        # scikit-learn's rule: a row with a neighbour at distance 0 weighs only those
        with np.errstate(divide="ignore"):
            weights = 1.0 / dist
        exact = np.isinf(weights)
        hit = exact.any(axis=1)
        weights[hit] = exact[hit]
        return weights


def compile_neighbors(member, probe) -> bool:
    """Give ``member`` (a fitted tabular member) a numpy twin when it is a Euclidean
    k-nearest-neighbour model and the twin predicts ``probe`` (a table of rows) as the member
    does. Returns whether it did."""
    model = getattr(member, "model_", None)
    if getattr(member, "family", None) != "sklearn" or model is None:
        return False
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

    if not isinstance(model, KNeighborsClassifier | KNeighborsRegressor):
        return False
    euclidean = model.effective_metric_ == "euclidean" or (
        model.effective_metric_ == "minkowski"
        and (model.effective_metric_params_ or {}).get("p", 2) == 2
    )
    if (
        not euclidean
        or model.weights not in ("uniform", "distance")
        or getattr(model, "outputs_2d_", False)
        or model.n_neighbors > model.n_samples_fit_
    ):
        return False
    try:
        twin = NeighborsTwin(model, member.task)
        Z = member.encode(probe)
        expected = member.predict_model(Z)
        got, tied = twin.predict_untied(np.asarray(Z, dtype=np.float64))
    except Exception as exc:  # a model this twin does not cover: the member stays as it is
        log.debug("member %s: no neighbours twin (%s)", member.name, exc)
        return False
    # rows with a tie are answered by scikit-learn when served: compare the others
    if got.shape != expected.shape or tied.mean() > 0.5:
        return False
    if not np.all(np.abs(got[~tied] - expected[~tied]) <= TOLERANCE):
        return False
    member.twin_ = twin
    return True
