"""Dynamic selection: for each row, the members that were right on similar rows.

The dynamic selection set (DSEL) is the rows the combiner is fit on: out-of-fold rows, where
every member's prediction is honest. At fit time the combiner keeps them as data: the
encoded features (:mod:`~ensemblex.combiners.features`, float32), the labels, and which
members were right on each row (``argmax == label``). At predict time it finds the k
nearest DSEL rows of every query in one :class:`~sklearn.neighbors.NearestNeighbors` call
(Euclidean, the index rebuilt lazily from the stored rows) and estimates each member's
competence from the correctness matrix gathered at those neighbours, ``(n_query, k,
n_members)``, with array operations only.

The rules are DESlib's (0.3.7, Cruz et al.), method by method:

======== =============================================================================
OLA      the member most often right among the k neighbours (ties: lowest index)
LCA      the member most often right among the neighbours whose label is the class it
         predicts for the query (0 where there are none; ties: lowest index)
KNORAE   the members right on all of the first j neighbours, j as large as some member
         allows (j = k down to 1); if none is right on the nearest, the whole pool
KNORAU   every member, its vote weighted by the number of neighbours it gets right
DESP     the members whose local accuracy beats a random guess (1 / n_classes); if none,
         the whole pool
METADES  the members a meta-classifier (multinomial naive Bayes on five groups of
         meta-features, trained on the DSEL itself) calls competent with probability
         above ``selection_threshold``; if none, the whole pool
KNOP     KNORA-U over the neighbours in the space of the members' output profiles
======== =============================================================================

Also as in DESlib: a row where all members predict the same class gets the mean of all
members' probabilities, with no selection. A selecting method (OLA, LCA) gives the chosen
member's probabilities. The others combine their selected members by ``voting``:
``"hard"`` gives DESlib's ``predict_proba`` with its default ``voting="hard"`` (the
share of the selected members' votes per class, weighted by competence for KNORA-U and
KNOP); ``"soft"`` (the default here, since vote shares are poor probabilities) gives the
mean of the selected members' probabilities (competence-weighted for KNORA-U and KNOP).
Two differences from DESlib, both on rows where its output is not a probability: with hard
KNORA-U/KNOP voting and no member right on any neighbour, DESlib divides 0 by 0 (NaN) and
here every member votes once; with soft voting DESlib passes KNORA-U's and KNOP's weighted
mean through a softmax (it flattens the probabilities, the argmax stays) and here the
weighted mean is normalised instead (no member right anywhere: the plain mean).

Sample weights are accepted: a row of weight 0 is left out of the DSEL, positive weights
are ignored (every neighbour counts once, as in DESlib). Classification only.

Examples
--------
>>> import numpy as np
>>> from ensemblex.combiners.dynamic import KNORAE
>>> X = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]])
>>> y = np.array([0, 0, 0, 1, 1, 1])
>>> # member 0 is right near 0, member 1 near 5; each says the other class elsewhere
>>> P = np.array([[[.9, .1], [.2, .8]]] * 3 + [[[.9, .1], [.3, .7]]] * 3)
>>> knora = KNORAE(k=2).fit(P, y, X=X)
>>> knora.predict(P[[0, 3]], X=X[[0, 3]]).round(2)
array([[0.9, 0.1],
       [0.3, 0.7]])
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from scipy.special import logsumexp
from sklearn.neighbors import NearestNeighbors
from sklearn.utils._param_validation import Interval, StrOptions

from ensemblex.combiners.base import Combiner
from ensemblex.combiners.features import encoded_width
from ensemblex.tasks import is_classification

# META-DES digitises its meta-features into 11 bins before the multinomial naive Bayes, as
# DESlib does (after PRTools): edges 0.1, 0.2, ..., 1.0.
_META_BINS = np.linspace(0.1, 1, 10)
# Additive smoothing of the naive Bayes counts: scikit-learn's MultinomialNB default.
_NB_ALPHA = 1.0


# ---------------------------------------------------------------- competence from neighbours
def correct_at(correct: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """Which members were right at each query's neighbours.

    Input: correct (n_dsel, m) bool, neighbours (n, k) indices. Output: (n, k, m) bool.
    """
    return correct[neighbours]


def local_accuracy(hits: np.ndarray) -> np.ndarray:
    """Share of neighbours each member gets right (OLA, DES-P). Input (n, k, m); output (n, m)."""
    return hits.sum(axis=1) / hits.shape[1]


def class_accuracy(hits: np.ndarray, labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """LCA: each member's accuracy on the neighbours whose label is its predicted class.

    Input: hits (n, k, m) bool, labels (n, k) of the neighbours, predicted (n, m) classes
    the members give the query. Output: (n, m); 0 where no neighbour has that label.
    """
    same = labels[:, :, None] == predicted[:, None, :]
    count = same.sum(axis=1)
    right = (hits & same).sum(axis=1)
    return np.where(count > 0, right / np.maximum(count, 1), 0.0)


def oracle_run(hits: np.ndarray) -> np.ndarray:
    """KNORA-E: how many of the nearest neighbours, in order, each member gets right before
    its first mistake. Input (n, k, m); output (n, m) integers in [0, k]."""
    return np.cumprod(hits, axis=1, dtype=np.int8).sum(axis=1, dtype=np.int64)


def select_best(competence: np.ndarray) -> np.ndarray:
    """All members with the row's highest competence (KNORA-E): (n, m) -> (n, m) bool.

    Where the highest is 0, every member is selected: the whole pool."""
    return competence == competence.max(axis=1, keepdims=True)


def select_above(competence: np.ndarray, threshold: float) -> np.ndarray:
    """Members with competence above ``threshold``, or the whole pool where none is.

    Input (n, m); output (n, m) bool."""
    selected = competence > threshold
    selected[~selected.any(axis=1)] = True
    return selected


# ---------------------------------------------------------------- combining the selection
def combine(
    values: np.ndarray, predicted: np.ndarray, weights: np.ndarray, voting: str
) -> np.ndarray:
    """The selected members' combined output; weights 0/1 select, counts weight.

    Input: values (n, m, k) probabilities, predicted (n, m) classes, weights (n, m) >= 0.
    Output: (n, k). ``"soft"``: weighted mean of probabilities; ``"hard"``: weighted share
    of votes per class. A row whose weights are all 0 counts every member once.
    """
    w = weights.astype(np.float64)
    w[~(w > 0).any(axis=1)] = 1.0
    total = w.sum(axis=1, keepdims=True)
    if voting == "soft":
        return np.einsum("nm,nmk->nk", w, values) / total
    n, _, k = values.shape
    cells = (np.arange(n)[:, None] * k + predicted).ravel()
    votes = np.bincount(cells, weights=w.ravel(), minlength=n * k).reshape(n, k)
    return votes / total


def predicted_classes(values: np.ndarray) -> np.ndarray:
    """Each member's class (argmax, ties to the lowest class). Input (n, m, k); output (n, m)."""
    return values.argmax(axis=2)


def output_profiles(values: np.ndarray) -> np.ndarray:
    """Rows as points in the members' output space, as DESlib's KNOP and META-DES place them.

    Input (n, m, k). Output (n, m k) for multiclass; (n, m) for binary, where only the first
    class's probability is kept (the other is its complement).
    """
    if values.shape[2] == 2:
        return np.ascontiguousarray(values[:, :, 0])
    return values.reshape(len(values), -1)


# ---------------------------------------------------------------- the base class
class DynamicSelection(Combiner):
    """Base class: the DSEL as data, the lazy neighbour index, rows where members agree.

    Subclasses implement ``_combine_rows(values, predicted, X) -> (n, k)`` for rows on which
    the members disagree, and may extend ``_fit_dynamic(proba)`` to keep more of the DSEL.

    Attributes
    ----------
    dsel_features_ : ndarray of shape (n_dsel, n_encoded), float32
        The DSEL rows' encoded features (absent where ``uses_features == "none"``).
    dsel_labels_ : ndarray of shape (n_dsel,)
        Their labels as class codes.
    dsel_correct_ : ndarray of shape (n_dsel, n_members), bool
        Which members were right on each row.
    """

    _parameter_constraints: ClassVar[dict] = {
        **Combiner._parameter_constraints,
        "k": [Interval(Integral, 1, None, closed="left")],
    }
    uses_features: ClassVar[str] = "required"

    # ------------------------------------------------------------ fit
    def _fit(self, values, y, sample_weight, X=None):
        if not is_classification(self.task_):
            raise ValueError(
                f"{type(self).__name__} selects members by their class predictions; dynamic "
                f"selection here needs a classification task, however: task={self.task_!r}"
            )
        keep = slice(None) if sample_weight is None else sample_weight > 0
        if len(y[keep]) < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 rows of positive weight to select "
                f"from, however: {len(y[keep])}"
            )
        # float32 like the features: the DSEL can be large, and correctness is then read off
        # the same rounded numbers that KNOP and META-DES measure distances on
        proba = np.asarray(values[keep], dtype=np.float32)
        self.dsel_labels_ = np.asarray(y[keep], dtype=np.int64)
        self.dsel_correct_ = predicted_classes(proba) == self.dsel_labels_[:, None]
        if self.uses_features == "required":
            self.dsel_features_ = np.asarray(X[keep], dtype=np.float32)
        self._indices = {}
        self._fit_dynamic(proba)

    def _fit_dynamic(self, proba: np.ndarray) -> None:
        """Keep what else the method needs of the DSEL probabilities (n_dsel, m, k)."""

    # ------------------------------------------------------------ predict
    def predict_folds(self, folds, X=None) -> np.ndarray:
        """As :meth:`Combiner.predict_folds`; a row's neighbours among the DSEL rows do not
        depend on the fold model, so the folds share one neighbour query (on letter's 4,000
        test rows and 5 folds: 1.2 s -> 0.3 s)."""
        self._neighbour_memo = {}
        try:
            return super().predict_folds(folds, X=X)
        finally:
            self._neighbour_memo = None

    def _predict(self, values, X=None):
        predicted = predicted_classes(values)
        # rows where every member says the same class get the mean, with no selection
        out = values.mean(axis=1)
        rows = np.flatnonzero(~(predicted == predicted[:, :1]).all(axis=1))
        if rows.size:
            self._batch = (X, rows)  # for _feature_neighbours' shared query
            try:
                out[rows] = self._combine_rows(
                    values[rows], predicted[rows], None if X is None else X[rows]
                )
            finally:
                self._batch = None
        return out

    def _combine_rows(self, values, predicted, X) -> np.ndarray:
        raise NotImplementedError

    def _k(self) -> int:
        # as DESlib: all other DSEL rows (n - 1) when k is larger than the DSEL
        n = len(self.dsel_labels_)
        return int(self.k) if self.k <= n else n - 1

    def _index(self, name: str, points: np.ndarray, n_neighbors: int) -> NearestNeighbors:
        """The neighbour index of stored ``points``, built on first use and kept.

        ``n_neighbors`` is given at construction only because scikit-learn picks the
        algorithm from it (brute force when it is half the rows or more), as DESlib's index
        of the same rows does.
        """
        indices = self.__dict__.setdefault("_indices", {})
        if name not in indices:
            indices[name] = NearestNeighbors(n_neighbors=n_neighbors).fit(
                np.asarray(points, dtype=np.float64)
            )
        return indices[name]

    def _feature_neighbours(self, X: np.ndarray, n_neighbors: int | None = None) -> np.ndarray:
        """Indices (n, n_neighbors) of each row's nearest DSEL rows, nearest first."""
        k = self._k()
        n_neighbors = n_neighbors or k
        index = self._index("features", self.dsel_features_, k)
        memo = getattr(self, "_neighbour_memo", None)
        batch = getattr(self, "_batch", None)
        if memo is not None and batch is not None and batch[0] is not None:
            # inside predict_folds: query every row of the batch once, for all folds
            full, rows = batch
            key = (n_neighbors, full.shape, hash(np.ascontiguousarray(full).tobytes()))
            if key not in memo:
                memo[key] = index.kneighbors(
                    np.asarray(full, dtype=np.float64),
                    n_neighbors=n_neighbors,
                    return_distance=False,
                )
            return memo[key][rows]
        return index.kneighbors(
            np.asarray(X, dtype=np.float64), n_neighbors=n_neighbors, return_distance=False
        )

    # ------------------------------------------------------------ state
    def _set_fitted_state(self, fitted: dict) -> None:
        m, k = len(self.members_), self.n_outputs_
        labels = np.asarray(fitted.get("dsel_labels_"))
        correct = np.asarray(fitted.get("dsel_correct_"))
        if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) < 2:
            raise ValueError(
                f"dsel_labels_ must be a vector of at least 2 class codes, however: "
                f"shape={labels.shape}, dtype={labels.dtype}"
            )
        n = len(labels)
        if labels.min() < 0 or labels.max() >= k:
            raise ValueError(f"dsel_labels_ must be class codes in [0, {k})")
        if correct.shape != (n, m) or correct.dtype != bool:
            raise ValueError(
                f"dsel_correct_ must be a bool array of shape ({n}, {m}), however: "
                f"shape={correct.shape}, dtype={correct.dtype}"
            )
        if self.uses_features == "required":
            encoding = fitted.get("feature_encoding_")
            if not isinstance(encoding, dict) or not {"numeric", "categories"} <= set(encoding):
                raise ValueError("the state lacks the feature encoding (feature_encoding_)")
            width = encoded_width(encoding)
            _check_rows(fitted.get("dsel_features_"), n, "dsel_features_", width)
        super()._set_fitted_state(fitted)
        self._indices = {}


def _check_rows(array, n: int, name: str, width: int | None = None) -> None:
    array = np.asarray(array)
    if (
        array.ndim != 2
        or len(array) != n
        or (width is not None and array.shape[1] != width)
        or array.dtype.kind != "f"
        or not np.all(np.isfinite(array))
    ):
        raise ValueError(
            f"{name} must be finite floats with {n} rows"
            + ("" if width is None else f" and {width} columns")
            + f", however: shape={array.shape}, dtype={array.dtype}"
        )


class _Voting(DynamicSelection):
    """A dynamic ensemble selection method: ``voting`` combines the selected members."""

    _parameter_constraints: ClassVar[dict] = {
        **DynamicSelection._parameter_constraints,
        "voting": [StrOptions({"soft", "hard"})],
    }


# ---------------------------------------------------------------- the methods
class OLA(DynamicSelection):
    """Overall local accuracy: the member most often right among the k nearest DSEL rows.

    Parameters
    ----------
    k : int, default 7
        Neighbours (DSEL rows) that measure competence.
    metric : str, default "auto"

    Attributes
    ----------
    dsel_features_, dsel_labels_, dsel_correct_ : see :class:`DynamicSelection`.

    References
    ----------
    Woods, Kegelmeyer and Bowyer, "Combination of multiple classifiers using local accuracy
    estimates", IEEE TPAMI 19(4), 1997.
    """

    def __init__(self, k=7, metric="auto"):
        self.k = k
        self.metric = metric

    def _competence(self, values, predicted, X) -> np.ndarray:
        return local_accuracy(correct_at(self.dsel_correct_, self._feature_neighbours(X)))

    def _combine_rows(self, values, predicted, X):
        # argmax: ties go to the lowest member index, as in DESlib's "best" selection
        chosen = self._competence(values, predicted, X).argmax(axis=1)
        return values[np.arange(len(values)), chosen]


class LCA(OLA):
    """Local class accuracy: the member most often right among the k nearest DSEL rows
    whose label is the class that member predicts for the query.

    Parameters and attributes as :class:`OLA`.
    """

    def _competence(self, values, predicted, X):
        neighbours = self._feature_neighbours(X)
        hits = correct_at(self.dsel_correct_, neighbours)
        return class_accuracy(hits, self.dsel_labels_[neighbours], predicted)


class KNORAE(_Voting):
    """KNORA-Eliminate: the members right on every one of the nearest DSEL rows.

    Starting from the k nearest rows, the neighbourhood shrinks until some member is right
    on all of it; those members are combined. If no member is right on the nearest row,
    the whole pool is.

    Parameters
    ----------
    k : int, default 7
    voting : {"soft", "hard"}, default "soft"
        "soft": the mean of the selected members' probabilities (DESlib's ``voting="soft"``);
        "hard": the share of their votes per class (DESlib's default).
    metric : str, default "auto"

    References
    ----------
    Ko, Sabourin and Britto, "From dynamic classifier selection to dynamic ensemble
    selection", Pattern Recognition 41(5), 2008.
    """

    def __init__(self, k=7, voting="soft", metric="auto"):
        self.k = k
        self.voting = voting
        self.metric = metric

    def _combine_rows(self, values, predicted, X):
        run = oracle_run(correct_at(self.dsel_correct_, self._feature_neighbours(X)))
        return combine(values, predicted, select_best(run), self.voting)


class KNORAU(KNORAE):
    """KNORA-Union: every member, weighted by how many of the k nearest DSEL rows it gets
    right; a member right on none has no say. Parameters as :class:`KNORAE`."""

    def _combine_rows(self, values, predicted, X):
        hits = correct_at(self.dsel_correct_, self._feature_neighbours(X))
        return combine(values, predicted, hits.sum(axis=1), self.voting)


class DESP(KNORAE):
    """DES-Performance: the members whose accuracy on the k nearest DSEL rows beats a random
    guess, 1 / n_classes; if none does, the whole pool. Parameters as :class:`KNORAE`.

    References
    ----------
    Woloszynski, Kurzynski, Podsiadlo and Stachowiak, "A measure of competence based on
    random classification for dynamic ensemble selection", Information Fusion 13(3), 2012.
    """

    def _combine_rows(self, values, predicted, X):
        accuracy = local_accuracy(correct_at(self.dsel_correct_, self._feature_neighbours(X)))
        return combine(
            values, predicted, select_above(accuracy, 1.0 / values.shape[2]), self.voting
        )


class KNOP(KNORAE):
    """K-nearest output profiles: KNORA-U over the DSEL rows nearest in the members' output
    space, so it reads no features.

    A row's output profile is its members' probabilities side by side (binary: the first
    class's only, as in DESlib). Parameters as :class:`KNORAE`.

    Attributes
    ----------
    dsel_profiles_ : ndarray of shape (n_dsel, n_members * n_classes) or (n_dsel, n_members)
        The DSEL rows' output profiles, float32.
    dsel_labels_, dsel_correct_ : see :class:`DynamicSelection`.

    References
    ----------
    Cavalin, Sabourin and Suen, "LoGID: an adaptive framework combining local and global
    incremental learning for dynamic selection of ensembles of HMMs", Pattern Recognition
    45(9), 2012.
    """

    uses_features: ClassVar[str] = "none"

    def _fit_dynamic(self, proba):
        self.dsel_profiles_ = output_profiles(proba)

    def _profile_k(self) -> int:
        """Output-profile neighbours (DESlib builds that index with this many)."""
        return self._k()

    def _profile_neighbours(self, values, n_neighbors: int) -> np.ndarray:
        index = self._index("profiles", self.dsel_profiles_, self._profile_k())
        return index.kneighbors(
            output_profiles(values).astype(np.float64), n_neighbors, return_distance=False
        )

    def _combine_rows(self, values, predicted, X):
        hits = correct_at(self.dsel_correct_, self._profile_neighbours(values, self._k()))
        return combine(values, predicted, hits.sum(axis=1), self.voting)

    def _set_fitted_state(self, fitted):
        m, k = len(self.members_), self.n_outputs_
        width = m if k == 2 else m * k
        n = len(np.asarray(fitted.get("dsel_labels_", ())))
        _check_rows(fitted.get("dsel_profiles_"), n, "dsel_profiles_", width)
        super()._set_fitted_state(fitted)


class METADES(KNOP):
    """META-DES: a meta-classifier decides, from five kinds of meta-features, which members
    are competent for a row; those above ``selection_threshold`` are combined.

    The meta-features of a (row, member) pair, as in DESlib: whether the member was right at
    each of the k nearest DSEL rows (k), its probability of the true class there (k), its
    accuracy over them (1), whether it was right at each of the ``kp`` DSEL rows nearest in
    output-profile space (kp), and its confidence on the row (its largest probability, 1).
    The meta-classifier is DESlib's default: multinomial naive Bayes on the meta-features
    digitised into 11 bins, trained as DESlib trains it, on the DSEL itself (each DSEL row's
    neighbours leaving out its nearest, itself), its target whether the member was right.
    Here the DSEL is out-of-fold rows, so the meta-training sees honest correctness; the
    fitted naive Bayes is kept as its log-probabilities and applied with numpy.

    Parameters
    ----------
    k : int, default 7
        Neighbours in feature space.
    kp : int, default 5
        Neighbours in output-profile space (DESlib's ``Kp``).
    hc : float in [0.5, 1], default 1.0
        Sample selection of the meta-training (DESlib's ``Hc``): DSEL rows on which the
        share of right members is below ``hc`` or above ``1 - hc``; 1.0 keeps every row.
    selection_threshold : float in [0.5, 1), default 0.5
        A member is selected when its competence (probability) is above this.
    voting : {"soft", "hard"}, default "soft"
    metric : str, default "auto"

    Attributes
    ----------
    dsel_features_, dsel_labels_, dsel_correct_ : see :class:`DynamicSelection`.
    dsel_profiles_ : see :class:`KNOP`.
    dsel_true_proba_ : ndarray of shape (n_dsel, n_members), float32
        Each member's probability of the true class on each DSEL row.
    meta_class_log_prior_ : ndarray of shape (2,)
        Log prior of "not competent" and "competent" (-inf for a class never seen).
    meta_feature_log_prob_ : ndarray of shape (2, 2 k + kp + 2)
        The naive Bayes' log-probabilities of the meta-features per class.

    References
    ----------
    Cruz, Sabourin, Cavalcanti and Ren, "META-DES: A dynamic ensemble selection framework
    using meta-learning", Pattern Recognition 48(5), 2015.
    """

    _parameter_constraints: ClassVar[dict] = {
        **_Voting._parameter_constraints,
        "kp": [Interval(Integral, 1, None, closed="left")],
        "hc": [Interval(Real, 0.5, 1, closed="both")],
        "selection_threshold": [Interval(Real, 0.5, 1, closed="left")],
    }
    uses_features: ClassVar[str] = "required"

    def __init__(self, k=7, kp=5, hc=1.0, selection_threshold=0.5, voting="soft", metric="auto"):
        self.k = k
        self.kp = kp
        self.hc = hc
        self.selection_threshold = selection_threshold
        self.voting = voting
        self.metric = metric

    def _k(self) -> int:
        # the meta-training asks for k + 1 neighbours (the row itself among them)
        return min(int(self.k), len(self.dsel_labels_) - 1)

    def _profile_k(self) -> int:
        return min(int(self.kp), len(self.dsel_labels_) - 1)

    def _fit_dynamic(self, proba):
        super()._fit_dynamic(proba)
        n, m = self.dsel_correct_.shape
        self.dsel_true_proba_ = proba[np.arange(n), :, self.dsel_labels_]
        # meta-training rows: DESlib's sample selection by the share of right members
        agreement = self.dsel_correct_.sum(axis=1) / m
        rows = np.flatnonzero((self.hc > agreement) | (agreement > 1 - self.hc))
        X = self.dsel_features_[rows].astype(np.float64)
        # k + 1 neighbours, then the first (the row itself) dropped, as DESlib does
        neighbours = self._feature_neighbours(X, self._k() + 1)[:, 1:]
        profile_neighbours = self._profile_neighbours(proba[rows], self._profile_k() + 1)[:, 1:]
        design = self._meta_features(proba[rows].astype(np.float64), neighbours, profile_neighbours)
        target = self.dsel_correct_[rows].reshape(-1)
        self._fit_naive_bayes(design.reshape(-1, design.shape[2]), target)

    def _meta_features(self, values, neighbours, profile_neighbours) -> np.ndarray:
        """The digitised meta-features of every (row, member) pair.

        Input: values (n, m, k) probabilities of the rows, neighbours (n, k') and
        profile_neighbours (n, kp') DSEL indices.
        Output: (n, m, 2 k' + kp' + 2) bin numbers 0..10, uint8.
        """
        hits = correct_at(self.dsel_correct_, neighbours).transpose(0, 2, 1)
        true_proba = self.dsel_true_proba_[neighbours].transpose(0, 2, 1).astype(np.float64)
        accuracy = hits.sum(axis=2, keepdims=True) / hits.shape[2]
        profile_hits = correct_at(self.dsel_correct_, profile_neighbours).transpose(0, 2, 1)
        confidence = values.max(axis=2)[:, :, None]
        features = np.concatenate([hits, true_proba, accuracy, profile_hits, confidence], axis=2)
        return np.digitize(features, _META_BINS).astype(np.uint8)

    def _fit_naive_bayes(self, design: np.ndarray, target: np.ndarray) -> None:
        """Multinomial naive Bayes with scikit-learn's defaults (alpha 1, fitted prior)."""
        counts = np.stack(
            [
                design[~target].sum(axis=0, dtype=np.float64),
                design[target].sum(axis=0, dtype=np.float64),
            ]
        )
        smoothed = counts + _NB_ALPHA
        self.meta_feature_log_prob_ = np.log(smoothed) - np.log(smoothed.sum(axis=1, keepdims=True))
        class_count = np.array([(~target).sum(), target.sum()], dtype=np.float64)
        with np.errstate(divide="ignore"):  # a class never seen has prior 0: log -inf
            self.meta_class_log_prior_ = np.log(class_count) - np.log(class_count.sum())

    def competence(self, values: np.ndarray, X: np.ndarray) -> np.ndarray:
        """The meta-classifier's probability that each member is competent for each row.

        Input: values (n, m, k) probabilities, X (n, n_encoded) encoded features.
        Output: (n, m).
        """
        neighbours = self._feature_neighbours(X)
        profile_neighbours = self._profile_neighbours(values, self._profile_k())
        design = self._meta_features(values, neighbours, profile_neighbours)
        joint = (
            design.astype(np.float64) @ self.meta_feature_log_prob_.T + self.meta_class_log_prior_
        )
        return np.exp(joint[:, :, 1] - logsumexp(joint, axis=2))

    def _combine_rows(self, values, predicted, X):
        selected = select_above(self.competence(values, X), self.selection_threshold)
        return combine(values, predicted, selected, self.voting)

    def _set_fitted_state(self, fitted):
        n, m = len(np.asarray(fitted.get("dsel_labels_", ()))), len(self.members_)
        _check_rows(fitted.get("dsel_true_proba_"), n, "dsel_true_proba_", m)
        width = 2 * min(int(self.k), n - 1) + min(int(self.kp), n - 1) + 2
        log_prob = np.asarray(fitted.get("meta_feature_log_prob_"))
        prior = np.asarray(fitted.get("meta_class_log_prior_"))
        if log_prob.shape != (2, width) or not np.all(np.isfinite(log_prob)):
            raise ValueError(f"meta_feature_log_prob_ must be finite with shape (2, {width})")
        if prior.shape != (2,) or np.isnan(prior).any() or not np.isfinite(prior).any():
            raise ValueError("meta_class_log_prior_ must be two log-probabilities")
        super()._set_fitted_state(fitted)


def candidates(metric="auto", random_state=0) -> dict[str, Combiner]:
    """The dynamic selection combiners by CLI name (unfitted); all but ``knop`` read the
    features ``X``. Classification only. ``random_state`` is unused (all are deterministic)."""
    return {
        "ola": OLA(metric=metric),
        "lca": LCA(metric=metric),
        "knora_e": KNORAE(metric=metric),
        "knora_u": KNORAU(metric=metric),
        "des_p": DESP(metric=metric),
        "meta_des": METADES(metric=metric),
        "knop": KNOP(metric=metric),
    }
