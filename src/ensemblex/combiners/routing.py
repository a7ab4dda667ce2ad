"""Routing: member weights that depend on where a sample lies in feature space.

Two combiners read the encoded features ``X`` (:mod:`~ensemblex.combiners.features`) and
give each row its own convex member weights ``w(x)``, so the output ``sum_m w_m(x) P_m(x)``
is a mixture (probabilities still sum to one):

- :class:`FuzzyRouting` (GENNAPE-style): fuzzy c-means clusters the rows; each cluster gets
  convex weights fitted by :class:`~ensemblex.combiners.weighted.Weighted` on the rows
  weighted by their memberships, shrunk toward the global weights; a row's weights are
  its memberships' mix of the clusters' weights.
- :class:`GatedMixture` (mixture of experts over fixed members): a softmax gate
  ``w(x) = softmax(x W + b)``, fitted by L-BFGS on the mixture's loss, regularised toward
  the static :class:`~ensemblex.combiners.weighted.Weighted` weights.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax
from sklearn.cluster import kmeans_plusplus
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from threadpoolctl import threadpool_limits

from ensemblex.combiners.base import Combiner
from ensemblex.combiners.features import n_rows
from ensemblex.combiners.weighted import convex_weights
from ensemblex.tasks import is_classification

_EPS = np.finfo(np.float64).eps
# Static weights are floored before their logarithm becomes the gate's prior bias: a member
# the static fit dropped starts (and is pulled toward) a weight of about 1e-3, not -inf.
_WEIGHT_FLOOR = 1e-3
# The gate penalties ``alpha="auto"`` chooses among by 3-fold cross-validation.
AUTO_ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1)


# ---------------------------------------------------------------- fuzzy c-means
# Written here in numpy: no maintained library does it well. scikit-fuzzy, the one that
# has it, is rarely released and its ``cmeans`` takes neither sample weights nor a k-means++
# start (and wants the data transposed); the algorithm is twenty lines.


def squared_distances(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances of rows to centres.

    Input: X (n, d), centres (c, d). Output: (n, c). One pass per centre, exact differences
    (no ``|x|^2 - 2 x.v + |v|^2`` cancellation for rows near a centre).
    """
    out = np.empty((len(X), len(centres)))
    for c, centre in enumerate(centres):
        diff = X - centre
        out[:, c] = np.einsum("nd,nd->n", diff, diff)
    return out


def fuzzy_memberships(X: np.ndarray, centres: np.ndarray, fuzzifier: float = 2.0) -> np.ndarray:
    """Fuzzy c-means memberships ``u_ic = 1 / sum_j (d_ic / d_ij)^(2 / (m - 1))``.

    Input: X (n, d), centres (c, d). Output: (n, c), rows summing to one. Computed as a
    softmax of ``-log(d_ic^2) / (m - 1)``, which stays finite when a row sits on a centre
    (membership 1 there).

    Examples
    --------
    >>> import numpy as np
    >>> fuzzy_memberships(np.array([[0.0], [1.0]]), np.array([[0.0], [2.0]])).round(3)
    array([[1. , 0. ],
           [0.5, 0.5]])
    """
    d2 = np.maximum(squared_distances(X, centres), np.finfo(np.float64).tiny)
    return softmax(-np.log(d2) / (fuzzifier - 1.0), axis=1)


def fuzzy_c_means(
    X: np.ndarray,
    n_clusters: int,
    fuzzifier: float = 2.0,
    sample_weight: np.ndarray | None = None,
    max_iter: int = 150,
    tol: float = 1e-5,
    random_state=None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Fuzzy c-means (Bezdek): alternate memberships and membership-weighted centres.

    Centres start from k-means++ seeding. With sample weights, a row's pull on a centre is
    ``s_i u_ic^m``.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    n_clusters : int
        At most ``n``.
    fuzzifier : float, default 2.0
        ``m > 1``; near 1 the memberships are hard (k-means), larger makes them softer.
    sample_weight : ndarray of shape (n,), optional
    max_iter : int, default 150
    tol : float, default 1e-5
        Stop when no membership moves more than this in an iteration.
    random_state : int, RandomState or None

    Returns
    -------
    centres : ndarray of shape (n_clusters, d)
    memberships : ndarray of shape (n, n_clusters)
    n_iter : int
    """
    s = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    centres, _ = kmeans_plusplus(
        X, n_clusters, sample_weight=s, random_state=check_random_state(random_state)
    )
    U = fuzzy_memberships(X, centres, fuzzifier)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (n_iter is reported)
        pull = U**fuzzifier * s[:, None]
        mass = pull.sum(axis=0)
        # a centre no row pulls on (all weight zero near it) stays where it is
        centres = np.where(
            mass[:, None] > 0, (pull.T @ X) / np.maximum(mass, _EPS)[:, None], centres
        )
        U_new = fuzzy_memberships(X, centres, fuzzifier)
        moved = float(np.max(np.abs(U_new - U)))
        U = U_new
        if moved < tol:
            break
    return centres, U, n_iter


def auto_fuzzifier(n_samples: int, n_features: int) -> float:
    """The fuzzifier ``m`` of Schwämmle and Jensen (2010), at most 1.5.

    ``m = 1 + (1418 / N + 22.05) D^-2 + (12.33 / N + 0.243) D^(-0.0406 ln N - 0.1134)``.
    Distances between standardised rows concentrate as the dimension ``D`` grows, and with
    the classical ``m = 2`` fuzzy c-means then has one fixed point: every centre at the mean,
    every membership ``1 / c`` (it did so on the churn table, 13 encoded columns, where this
    formula gives 1.2 and the clusters hold 80% memberships on average). In few dimensions
    the formula exceeds 1.5 and is capped there: routing wants regions, and on a generated
    two-region case (2 features) the routed squared error was 0.67 of the static weights'
    at ``m = 2`` and 0.46 at ``m = 1.5``.

    Examples
    --------
    >>> round(auto_fuzzifier(6000, 13), 1), auto_fuzzifier(6000, 2)
    (1.2, 1.5)
    """
    n, d = max(int(n_samples), 2), max(int(n_features), 1)
    m = 1 + (1418 / n + 22.05) * d**-2.0 + (12.33 / n + 0.243) * d ** (-0.0406 * np.log(n) - 0.1134)
    return float(min(m, 1.5))


# ---------------------------------------------------------------- fuzzy routing
class FuzzyRouting(Combiner):
    """Convex member weights per fuzzy cluster of the features (GENNAPE-style routing).

    Fuzzy c-means splits the rows into ``n_clusters`` soft clusters of the encoded features.
    Cluster ``c`` gets weights ``w_c = (1 - shrinkage) * Weighted(u_c) + shrinkage *
    w_global``, where ``Weighted(u_c)`` is the convex fit on all rows weighted by their
    memberships ``u_c`` (times any sample weight) and ``w_global`` the fit on all rows. A row
    is combined with ``w(x) = sum_c u_c(x) w_c``, so the prediction is ``sum_c u_c(x)
    (w_c . P(x))``, a convex mixture.

    Parameters
    ----------
    n_clusters : int, default 4
        Fuzzy clusters (at most the number of rows).
    fuzzifier : float or "auto", default "auto"
        The fuzzy c-means exponent ``m > 1``: smaller gives harder clusters. ``"auto"`` is
        :func:`auto_fuzzifier` (1.2 for 13 encoded columns, 1.5 for six or fewer).
    shrinkage : float, default 0.2
        Share of the global weights in each cluster's, in [0, 1]; 1 is :class:`Weighted`.
        On four real tables (8 members, 3,000 to 8,000 rows) 4 clusters and 0.2 were never
        worse than the static weights (test loss -0.1% to +0.0%); 6 clusters gained 0.3%
        on california housing and lost 1.9% on stroke.
    max_iter : int, default 150
        Fuzzy c-means iterations at most.
    tol : float, default 1e-5
        Fuzzy c-means stops when no membership moves more than this.
    metric : str, default "auto"
        Reports scores; the weights minimise log-loss or squared error (see Weighted).
    random_state : int, default 0
        Seed of the k-means++ start.

    Attributes
    ----------
    centres_ : ndarray of shape (n_clusters, n_encoded)
        Cluster centres in the encoded feature space.
    cluster_weights_ : ndarray of shape (n_clusters, n_members)
        Convex weights of each cluster (after shrinkage).
    global_weights_ : ndarray of shape (n_members,)
    fuzzifier_ : float
        The exponent used.
    cluster_mass_ : ndarray of shape (n_clusters,)
        Sum of each cluster's memberships over the fit rows.
    n_iter_ : int
        Fuzzy c-means iterations run.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.linspace(-1, 1, 200)[:, None]
    >>> y = np.abs(x[:, 0])
    >>> P = np.stack([-x, x], axis=1)  # member 0 is right for x < 0, member 1 for x > 0
    >>> r = FuzzyRouting(n_clusters=2, shrinkage=0.0).fit(P, y, X=x)
    >>> r.cluster_weights_[np.argsort(r.centres_[:, 0])].round(1)
    array([[1., 0.],
           [0., 1.]])
    """

    _parameter_constraints: ClassVar[dict] = {
        **Combiner._parameter_constraints,
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "fuzzifier": [Interval(Real, 1, None, closed="neither"), StrOptions({"auto"})],
        "shrinkage": [Interval(Real, 0, 1, closed="both")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    uses_features: ClassVar[str] = "required"

    def __init__(
        self,
        n_clusters=4,
        fuzzifier="auto",
        shrinkage=0.2,
        max_iter=150,
        tol=1e-5,
        metric="auto",
        random_state=0,
    ):
        self.n_clusters = n_clusters
        self.fuzzifier = fuzzifier
        self.shrinkage = shrinkage
        self.max_iter = max_iter
        self.tol = tol
        self.metric = metric
        self.random_state = random_state

    def _fit(self, values, y, sample_weight, X):
        s = np.ones(len(values)) if sample_weight is None else sample_weight
        n_clusters = min(int(self.n_clusters), len(values))
        self.fuzzifier_ = (
            auto_fuzzifier(*X.shape) if self.fuzzifier == "auto" else float(self.fuzzifier)
        )
        self.centres_, U, self.n_iter_ = fuzzy_c_means(
            X,
            n_clusters,
            self.fuzzifier_,
            sample_weight=s,
            max_iter=int(self.max_iter),
            tol=float(self.tol),
            random_state=self.random_state,
        )
        self.cluster_mass_ = U.T @ s
        self.global_weights_ = convex_weights(values, y, self.task_, s)[0]
        shrink = float(self.shrinkage)
        local = [
            convex_weights(values, y, self.task_, U[:, c] * s)[0]
            if shrink < 1 and self.cluster_mass_[c] > 0
            else self.global_weights_
            for c in range(n_clusters)
        ]
        self.cluster_weights_ = (1 - shrink) * np.stack(local) + shrink * self.global_weights_

    def row_weights(self, X) -> np.ndarray:
        """Each row's member weights: (n, n_members), non-negative rows summing to one.

        ``X`` holds the rows' original features (DataFrame or array), as given to fit.
        """
        return self._row_weights(self._features_for(X, n_rows(X)))

    def _row_weights(self, X: np.ndarray) -> np.ndarray:
        U = fuzzy_memberships(X, self.centres_, self.fuzzifier_)
        return U @ self.cluster_weights_

    def _predict(self, values, X):
        return np.einsum("nm,nmk->nk", self._row_weights(X), values)

    def used_members(self) -> np.ndarray:
        # every row's weights are a convex mix of the clusters' weights
        return np.asarray(self.cluster_weights_).max(axis=0) > 0

    def _set_fitted_state(self, fitted: dict) -> None:
        centres = np.asarray(fitted.get("centres_"), dtype=np.float64)
        weights = np.asarray(fitted.get("cluster_weights_"), dtype=np.float64)
        m = len(self.members_)
        if centres.ndim != 2 or not np.all(np.isfinite(centres)):
            raise ValueError(
                f"centres_ must be a finite 2-D array, however: centres_.shape={centres.shape}"
            )
        if weights.shape != (len(centres), m) or not np.all(np.isfinite(weights)):
            raise ValueError(
                f"cluster_weights_ must be finite of shape ({len(centres)}, {m}), however: "
                f"cluster_weights_.shape={weights.shape}"
            )
        if np.any(weights < 0) or not np.allclose(weights.sum(axis=1), 1.0):
            raise ValueError("cluster_weights_ must be non-negative rows summing to one")
        fuzzifier = fitted.get("fuzzifier_")
        if not isinstance(fuzzifier, int | float) or not fuzzifier > 1:
            raise ValueError(f"fuzzifier_ must be a number above 1, however: {fuzzifier!r}")
        super()._set_fitted_state({**fitted, "centres_": centres, "cluster_weights_": weights})


# ---------------------------------------------------------------- gated mixture
def gate_objective(
    theta: np.ndarray,
    X: np.ndarray,
    A: np.ndarray,
    target: np.ndarray | None,
    w: np.ndarray,
    alpha: float,
    beta: float,
    prior: np.ndarray,
) -> tuple[float, np.ndarray]:
    """Loss of the gated mixture and its gradient in ``theta = [W.ravel(), b]``.

    The gate is ``g = softmax(X W + b)`` and the mixture ``q_i = sum_m g_im A_im``. With
    ``target=None`` (classification, ``A`` the members' probabilities of the true class) the
    loss is ``-sum_i w_i log q_i``; otherwise (regression, ``A`` the members' predictions)
    ``sum_i w_i (q_i - target_i)^2``. The penalty ``alpha |W|^2 + beta |b - prior|^2`` is
    added. Since ``dq_i / dz_im = g_im (A_im - q_i)``, the gradient with respect to the
    logits is ``R_im = dL/dq_i g_im (A_im - q_i)``, then ``dW = X^T R``, ``db = sum_i R_i``.

    Input: theta (d m + m,), X (n, d), A (n, m), target (n,) or None, w (n,), prior (m,).
    Output: (loss, gradient of shape (d m + m,)).
    """
    d, m = X.shape[1], A.shape[1]
    W, b = theta[: d * m].reshape(d, m), theta[d * m :]
    log_g = log_softmax(X @ W + b, axis=1)
    g = np.exp(log_g)
    q = np.einsum("nm,nm->n", g, A)
    if target is None:
        q_safe = np.maximum(q, _EPS)
        loss = -float(w @ np.log(q_safe))
        dq = -w / q_safe
    else:
        residual = q - target
        loss = float(w @ residual**2)
        dq = 2.0 * w * residual
    R = g * (A - q[:, None]) * dq[:, None]
    shift = b - prior
    loss += alpha * float(np.sum(W * W)) + beta * float(shift @ shift)
    grad = np.concatenate([(X.T @ R + 2.0 * alpha * W).ravel(), R.sum(axis=0) + 2.0 * beta * shift])
    return loss, grad


class GatedMixture(Combiner):
    """A learned softmax gate over members: ``P(x) = sum_m softmax(x W + b)_m P_m(x)``.

    A mixture of experts whose experts are the fixed members (CoSine-style routing): the
    gate reads the encoded features and gives each row convex member weights. ``W`` (d, m)
    and ``b`` (m,) minimise the mixture's loss (log-loss for classification, squared error
    for regression, per row and honouring sample weights) plus ``alpha |W|^2 + beta |b -
    log w_static|^2``, where ``w_static`` are the :class:`Weighted` weights fitted on the
    same rows. The search starts at ``W = 0, b = log w_static`` (the static combiner), so
    a large ``alpha`` keeps the static weights and a small one lets the gate route.

    Regression targets and predictions are centred and scaled by the targets' spread for
    the fit, so ``alpha`` means the same whatever the unit of y.

    Parameters
    ----------
    alpha : float or "auto", default 0.01
        L2 penalty on the gate's feature weights ``W`` (per row of loss). ``"auto"``
        chooses among ``AUTO_ALPHAS`` by 3-fold cross-validation (13 fits instead of 1).
        On four real tables (churn, california, wine quality, stroke; 8 members, 3,000 to
        8,000 rows) 0.01 changed the static weights' test loss by -0.2% to +0.1%, 1e-3
        by -0.3% to +0.8%; cross-validation chose 0.01 on three, 0.1 on one.
    beta : float, default 1e-3
        L2 pull of the gate's biases toward the log static weights (floored at 1e-3).
    max_iter : int, default 500
        L-BFGS iterations at most.
    tol : float, default 1e-7
        L-BFGS ``ftol`` (relative change of the loss).
    metric : str, default "auto"

    Attributes
    ----------
    gate_coef_ : ndarray of shape (n_encoded, n_members)
    gate_bias_ : ndarray of shape (n_members,)
    static_weights_ : ndarray of shape (n_members,)
        The :class:`Weighted` weights the gate starts from and is pulled toward.
    alpha_ : float
        The penalty used.
    converged_ : bool
    n_iter_ : int
    """

    _parameter_constraints: ClassVar[dict] = {
        **Combiner._parameter_constraints,
        "alpha": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "beta": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither")],
    }

    uses_features: ClassVar[str] = "required"

    def __init__(self, alpha=0.01, beta=1e-3, max_iter=500, tol=1e-7, metric="auto"):
        self.alpha = alpha
        self.beta = beta
        self.max_iter = max_iter
        self.tol = tol
        self.metric = metric

    def _fit(self, values, y, sample_weight, X):
        n, m, _ = values.shape
        w = np.full(n, 1.0 / n) if sample_weight is None else sample_weight / sample_weight.sum()
        self.static_weights_ = convex_weights(values, y, self.task_, w)[0]
        prior = np.log(np.maximum(self.static_weights_, _WEIGHT_FLOOR))
        if is_classification(self.task_):
            A = np.take_along_axis(values, y[:, None, None], axis=2)[..., 0]
            target = None
        else:
            center = float(w @ y)
            scale = float(np.sqrt(w @ (y - center) ** 2)) or 1.0
            A, target = (values[:, :, 0] - center) / scale, (y - center) / scale
        start = np.concatenate([np.zeros(X.shape[1] * m), prior])
        # One BLAS thread: the products are small, more threads only add synchronisation.
        with threadpool_limits(1, user_api="blas"):
            if self.alpha == "auto":
                self.alpha_ = self._choose_alpha(X, A, target, w, prior, y, start)
            else:
                self.alpha_ = float(self.alpha)
            result = self._minimize(start, X, A, target, w, self.alpha_, prior)
        self.gate_coef_ = result.x[:-m].reshape(-1, m)
        self.gate_bias_ = result.x[-m:]
        self.converged_ = bool(result.success)
        self.n_iter_ = int(result.nit)

    def _minimize(self, theta, X, A, target, w, alpha, prior):
        return minimize(
            gate_objective,
            theta,
            args=(X, A, target, w / w.sum(), alpha, float(self.beta), prior),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": int(self.max_iter), "ftol": float(self.tol), "gtol": 1e-9},
        )

    def _choose_alpha(self, X, A, target, w, prior, y, start) -> float:
        """The penalty of ``AUTO_ALPHAS`` with the least held-out loss over 3 folds; each
        fold goes from the strongest penalty to the weakest, each fit starting from the
        last."""
        counts = np.bincount(y) if target is None else None
        stratify = counts is not None and counts[counts > 0].min() >= 3
        folds = (StratifiedKFold if stratify else KFold)(3, shuffle=True, random_state=0)
        alphas = sorted(AUTO_ALPHAS, reverse=True)
        losses = np.zeros(len(alphas))
        for fit_rows, held_rows in folds.split(X, y):
            theta = start
            for j, alpha in enumerate(alphas):
                theta = self._minimize(
                    theta,
                    X[fit_rows],
                    A[fit_rows],
                    _rows(target, fit_rows),
                    w[fit_rows],
                    alpha,
                    prior,
                ).x
                held = (X[held_rows], A[held_rows], _rows(target, held_rows))
                losses[j] += gate_objective(theta, *held, w[held_rows], 0.0, 0.0, prior)[0]
        return float(alphas[int(np.argmin(losses))])

    def row_weights(self, X) -> np.ndarray:
        """The gate's member weights for rows with original features ``X``: (n, n_members)."""
        return self._row_weights(self._features_for(X, n_rows(X)))

    def _row_weights(self, X: np.ndarray) -> np.ndarray:
        return softmax(X @ self.gate_coef_ + self.gate_bias_, axis=1)

    def _predict(self, values, X):
        return np.einsum("nm,nmk->nk", self._row_weights(X), values)

    def _set_fitted_state(self, fitted: dict) -> None:
        coef = np.asarray(fitted.get("gate_coef_"), dtype=np.float64)
        bias = np.asarray(fitted.get("gate_bias_"), dtype=np.float64)
        m = len(self.members_)
        if coef.ndim != 2 or coef.shape[1] != m or not np.all(np.isfinite(coef)):
            raise ValueError(
                f"gate_coef_ must be finite of shape (n_encoded, {m}), however: "
                f"gate_coef_.shape={coef.shape}"
            )
        if bias.shape != (m,) or not np.all(np.isfinite(bias)):
            raise ValueError(
                f"gate_bias_ must be {m} finite numbers, however: gate_bias_.shape={bias.shape}"
            )
        super()._set_fitted_state({**fitted, "gate_coef_": coef, "gate_bias_": bias})


def _rows(target, rows):
    return None if target is None else target[rows]


def candidates(metric="auto", random_state=0) -> dict[str, Combiner]:
    """The routing combiners by CLI name (unfitted); both read the features ``X``."""
    return {
        "fuzzy_routing": FuzzyRouting(metric=metric, random_state=random_state),
        "gate": GatedMixture(metric=metric),
    }
