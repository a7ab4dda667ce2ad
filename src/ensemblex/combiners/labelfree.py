"""Label-free combiners: weigh members by how they agree with each other, without labels.

Four families, all fit with ``y=None`` (``needs_labels = False``, ``uses_features = "none"``):

- :class:`DawidSkene`: the Dawid & Skene (1979) latent-class model on each member's hard
  vote, fitted by EM: a confusion matrix per member and a class prior; the output is the
  posterior over classes given the members' votes.
- :class:`ProbabilisticDawidSkene`: the same model on the members' probability vectors
  (fractional votes).
- :class:`SpectralMetaLearner`: Parisi, Strino, Nadler & Kluger (2014): the off-diagonal
  of the members' vote covariance is rank one, its factor is each member's balanced
  accuracy (times a constant); members are weighted by the log-odds of that accuracy in a
  linear pool of their probabilities. A member votes for a class when its probability is
  in its top ``prevalence`` fraction of rows, so that a rare class gets votes.
- :class:`ConsensusWeighting`: each member weighted by its agreement with the members'
  consensus (a weighted mean of the members, so mixture weights and pruning work).

Consensus calibration (Dawid-Skene and the spectral learner, ``calibrate=True``): members
trained on the same rows err together, so a model that takes them as independent is far
too sure (Dawid-Skene's posterior after ten agreeing members), and its class prior can
follow one odd member. Without labels, the members' own probabilities are the reference
for how sure to be: the output logits get a scale and a bias per class fitted to the
members' per-row median forecast by cross-entropy (:func:`fit_scale_and_bias`). At the
optimum the output's mean probability of each class equals the reference's, so the class
balance is the members' (a median is not moved by one member that predicts a rare class
for most rows), and the scale undoes the independence overconfidence. The fitted model
(EM, weights) never sees the reference: it only maps the model's scores to probabilities.
It assumes members that are about calibrated and err together (cross-fitted on the same
rows); for independent annotators the combined posterior is rightly surer than any one of
them, and ``calibrate=False`` (or a few labels) is better.

A few labels help (the "Weaver" setting: a label model calibrated on a small labelled
set): pass ``y`` with None/NaN where a label is missing. Dawid-Skene then starts EM from
the labelled rows and fixes their posteriors to their labels (which also moves the class
prior); Dawid-Skene and the spectral learner fit their output temperature on them (on top
of the consensus calibration), the consensus its weighting temperature, each shrunk toward
its label-free value by a prior worth ``PRIOR_ROWS`` rows, so that twenty labels the
ensemble gets right do not make it overconfident. The member weights of the spectral
learner and the consensus never read labels. With every label given all of them still
work: that is how nested cross-validation scores them.

Measured on ten cross-fitted members (GBDTs, forests, a tree, k-NN, MLP, logistic
regression, naive Bayes; bench/adaptive.py's pools), test log-loss without labels, mean of
members / DS / soft DS / SML / consensus: stroke (5% positives) .213 / .188 / .174 / .172 /
.171 (before the calibration and the prevalence votes: DS .205, soft DS .796, SML 2.25);
adult5 .172 / .154 / .128 / .122 / .121; letter .364 / .225 / .237 / .213 / .161; wine .974
/ 1.01 / .996 / .942 / .910 (before: DS 3.27). Hard Dawid-Skene reads only votes and loses
to the mean on wine, churn and adult even when calibrated with every label (churn .376,
mean .349); the soft one on wine (.978 calibrated with every label).
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from scipy import sparse
from scipy.optimize import minimize, minimize_scalar
from scipy.special import log_softmax, softmax, xlogy
from sklearn.utils._param_validation import Interval, StrOptions

from ensemblex.combiners.base import Combiner, WeightedAverage
from ensemblex.combiners.pooling import log_probabilities
from ensemblex.tasks import is_classification

# crowd-kit's floor on confusion entries and on the prior (its ``_EPS``).
_CLIP = 1e-10
# Probabilities are floored before a logarithm, as in pooling: a member's exact 0 costs a
# bounded penalty.
_FLOOR = 1e-4
_EPS = np.finfo(np.float64).eps
# Temperatures fitted on known labels are shrunk toward their label-free value by a prior
# worth this many rows (see fit_temperature): twenty known rows then move them but do not
# decide them alone.
PRIOR_ROWS = 10.0
_TEMPERATURE_BOUNDS = (1e-2, 1e2)
# Consensus weights below this fraction of the total are set to zero, so that a deployed
# ensemble can drop those members (their share of the output is under a millionth).
_WEIGHT_CUTOFF = 1e-6


# ---------------------------------------------------------------- small pieces
def _check_classification(task: str, name: str) -> None:
    if not is_classification(task):
        raise ValueError(
            f"{name} combines class votes and must have a binary or multiclass task, however: "
            f"task={task!r} (ConsensusWeighting is the label-free combiner for regression)"
        )


def _row_weights(sample_weight, n: int) -> np.ndarray:
    """Row weights summing to one; shape (n,)."""
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    return w / w.sum()


def _labelled(y) -> np.ndarray:
    """True where a label is known: codes >= 0 (classification) or finite (regression)."""
    if y is None:
        return np.zeros(0, dtype=bool)
    y = np.asarray(y)
    return np.isfinite(y) if y.dtype.kind == "f" else y >= 0


def fit_temperature(
    logits: np.ndarray,
    codes: np.ndarray,
    weights=None,
    reference_logits=None,
    prior_rows: float | None = None,
    reference_weights=None,
) -> float:
    """The temperature ``t`` minimising the log-loss of ``softmax(logits / t)`` on known
    labels, shrunk toward 1.

    The shrinkage is a prior worth ``prior_rows`` rows that the model is calibrated as it
    is: the mean cross-entropy from ``softmax(reference_logits)`` to
    ``softmax(reference_logits / t)`` over the reference rows (all rows the model was fitted
    on), which is smallest at ``t = 1``. Without it, twenty known rows that the model gets
    right drive ``t`` to its lower bound, and the next mistake costs the log-loss's
    ceiling; with every row known, the prior weighs ``prior_rows / n``.

    Parameters
    ----------
    logits : ndarray of shape (n, k)
        Finite log-probabilities (up to a constant per row) of the rows with known labels.
    codes : ndarray of shape (n,)
        Their classes, 0..k-1.
    weights : ndarray of shape (n,), optional
        Row weights, rescaled to average one (so that the prior's strength does not
        depend on their scale).
    reference_logits : ndarray of shape (n_ref, k), optional
        Defaults to ``logits``.
    prior_rows : float, optional
        Defaults to ``PRIOR_ROWS``.
    reference_weights : ndarray of shape (n_ref,), optional
        Weights of the reference rows in the prior's mean.

    Returns
    -------
    float in [0.01, 100]

    Examples
    --------
    >>> logits = np.log([[0.9, 0.1]] * 30 + [[0.1, 0.9]] * 10)
    >>> codes = np.array([0] * 20 + [1] * 20)  # a third of the confident votes are wrong
    >>> t = fit_temperature(logits, codes, prior_rows=0.0)
    >>> round(t, 2), bool(1 < fit_temperature(logits, codes) < t)  # soften; the prior less
    (2.0, True)
    """
    prior_rows = PRIOR_ROWS if prior_rows is None else prior_rows
    n = len(codes)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w * (n / w.sum())
    rows = np.arange(n)
    reference = logits if reference_logits is None else reference_logits
    p_reference = softmax(reference, axis=1)
    ref_w = np.ones(len(reference)) if reference_weights is None else reference_weights
    ref_w = np.asarray(ref_w, dtype=np.float64) / np.sum(ref_w)

    def loss(log_t: float) -> float:
        t = np.exp(log_t)
        labelled = -float(w @ log_softmax(logits / t, axis=1)[rows, codes])
        prior = -float(ref_w @ np.sum(p_reference * log_softmax(reference / t, axis=1), 1))
        return (labelled + prior_rows * prior) / (n + prior_rows)

    lo, hi = np.log(_TEMPERATURE_BOUNDS)
    result = minimize_scalar(loss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


# ---------------------------------------------------------------- consensus calibration
def member_prevalence(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Class prevalence from the members: per class, the median over members of each
    member's mean probability, renormalised.

    Each cross-fitted member's mean probability of a class estimates its prevalence (a model
    fitted by log-loss is calibrated on average); the median over members ignores one that
    predicts a rare class for most rows, and, unlike the members' votes, it does not depend
    on how rarely a calibrated member's argmax lands on a rare class.

    Parameters
    ----------
    values : ndarray of shape (n, m, k)
    w : ndarray of shape (n,)
        Row weights summing to one.

    Returns
    -------
    ndarray of shape (k,)
        Sums to one.

    Examples
    --------
    >>> P = np.array([[[.9, .1], [.95, .05], [.2, .8]], [[.7, .3], [.85, .15], [.1, .9]]])
    >>> member_prevalence(P, np.array([.5, .5]))  # the third member is left out
    array([0.8, 0.2])
    """
    prevalence = np.median(np.einsum("n,nmk->mk", w, values), axis=0)
    return prevalence / prevalence.sum()


def median_forecast(values: np.ndarray) -> np.ndarray:
    """The members' per-row median probability of each class, renormalised over classes.

    The reference of the consensus calibration: a forecast as sure as a typical member,
    which one member alone cannot move.

    Parameters
    ----------
    values : ndarray of shape (n, m, k)

    Returns
    -------
    ndarray of shape (n, k)
        Rows sum to one (uniform where every median is 0).
    """
    median = np.median(values, axis=1)
    total = median.sum(axis=1, keepdims=True)
    return np.where(total > 0, median / np.where(total > 0, total, 1), 1 / values.shape[2])


def fit_scale_and_bias(
    logits: np.ndarray, target: np.ndarray, w: np.ndarray
) -> tuple[float, np.ndarray]:
    """The scale ``a`` and class biases ``b`` minimising the cross-entropy from ``target``
    to ``softmax(a * logits + b)``.

    A multinomial logistic regression with one shared slope on the logits and an intercept
    per class, fitted on soft labels: convex in ``(a, b)``. At its optimum the gradient in
    ``b`` is zero, i.e. the output's weighted mean probability of each class equals the
    target's; the gradient in ``a`` is zero unless ``a`` sits at a bound (0.01, 100).

    Parameters
    ----------
    logits : ndarray of shape (n, k)
        Finite.
    target : ndarray of shape (n, k)
        Rows sum to one.
    w : ndarray of shape (n,)
        Row weights summing to one.

    Returns
    -------
    scale : float in [0.01, 100]
    bias : ndarray of shape (k,)
        ``bias[0] = 0`` (a softmax ignores a constant).

    Examples
    --------
    >>> logits = np.log([[0.99, 0.01], [0.01, 0.99]] * 5)
    >>> target = np.array([[0.8, 0.2], [0.2, 0.8]] * 5)  # the logits are 6x too sure
    >>> scale, bias = fit_scale_and_bias(logits, target, np.full(10, 0.1))
    >>> round(scale, 3), bool(np.allclose(bias, 0, atol=1e-6))  # symmetric: no bias
    (0.302, True)
    """
    k = logits.shape[1]
    weighted_target = w[:, None] * target
    # the optimiser works on logits of unit spread: Dawid-Skene's are in the hundreds, and
    # the scale's gradient would dwarf the biases'
    centred = logits - logits.mean(axis=1, keepdims=True)
    spread = float(np.sqrt(w @ np.mean(centred**2, axis=1)))
    spread = spread if spread > 0 else 1.0
    unit = centred / spread

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        bias = np.concatenate([[0.0], theta[1:]])
        log_p = log_softmax(theta[0] * unit + bias, axis=1)
        residual = w[:, None] * np.exp(log_p) - weighted_target  # d loss / d (scaled logits)
        gradient = np.concatenate([[np.sum(residual * unit)], residual.sum(axis=0)[1:]])
        return -float(np.sum(weighted_target * log_p)), gradient

    bounds = [tuple(spread * np.array(_TEMPERATURE_BOUNDS))] + [(None, None)] * (k - 1)
    start = np.concatenate([[spread], np.zeros(k - 1)])
    result = minimize(
        loss,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 1000, "ftol": 1e-13, "gtol": 1e-9},
    )
    return float(result.x[0] / spread), np.concatenate([[0.0], result.x[1:]])


def weighted_ranks(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Each column's weighted mid-ranks in (0, 1): the weight of the rows below plus half
    the weight of the ties, over the total (the weighted empirical CDF at the midpoint).

    Parameters
    ----------
    x : ndarray of shape (n, p)
    w : ndarray of shape (n,)
        Non-negative row weights.

    Returns
    -------
    ndarray of shape (n, p)

    Examples
    --------
    >>> weighted_ranks(np.array([[3.0], [1.0], [3.0], [2.0]]), np.ones(4)).ravel()
    array([0.75 , 0.125, 0.75 , 0.375])
    """
    out = np.empty(x.shape, dtype=np.float64)
    for j in range(x.shape[1]):
        order = np.argsort(x[:, j], kind="stable")
        sorted_x = x[order, j]
        cumulative = np.concatenate([[0.0], np.cumsum(w[order])])
        below = cumulative[np.searchsorted(sorted_x, x[:, j], side="left")]
        up_to = cumulative[np.searchsorted(sorted_x, x[:, j], side="right")]
        out[:, j] = (below + up_to) / (2 * cumulative[-1])
    return out


def _output_calibration(
    logits: np.ndarray, values: np.ndarray, y, sample_weight, calibrate: bool
) -> tuple[float, np.ndarray, float]:
    """``(scale, bias, temperature)`` of a model's output ``softmax((scale * logits + bias) /
    temperature)``: scale and bias fitted to the members' median forecast, the temperature
    on the known labels, if any (shrunk toward 1, see :func:`fit_temperature`); with
    ``calibrate=False``, ``(1, 0, 1)``: the model as it is."""
    k = logits.shape[1]
    if not calibrate:
        return 1.0, np.zeros(k), 1.0
    w = _row_weights(sample_weight, len(logits))
    scale, bias = fit_scale_and_bias(logits, median_forecast(values), w)
    calibrated = scale * logits + bias
    labelled = np.flatnonzero(_labelled(y))
    temperature = 1.0
    if len(labelled):
        temperature = fit_temperature(
            calibrated[labelled], y[labelled], w[labelled], calibrated, reference_weights=w
        )
    return scale, bias, temperature


def _check_calibration(fitted: dict, k: int) -> None:
    """Refuse a stored calibration that is not a positive scale, k finite biases and a
    positive temperature."""
    scale, temperature = fitted.get("scale_"), fitted.get("temperature_")
    bias = np.asarray(fitted.get("bias_"), dtype=np.float64)
    for name, value in (("scale_", scale), ("temperature_", temperature)):
        if not isinstance(value, Real) or not 0 < value < np.inf:
            raise ValueError(f"{name} must be a positive number, however: {name}={value!r}")
    if bias.shape != (k,) or not np.all(np.isfinite(bias)):
        raise ValueError(f"bias_ must be {k} finite numbers, however: bias_={bias!r}")


# ---------------------------------------------------------------- Dawid-Skene EM
def vote_design(values: np.ndarray, soft: bool = False):
    """Members' votes as one matrix: column ``m * k + j`` is member m's vote for class j.

    Parameters
    ----------
    values : ndarray of shape (n, m, k)
        Members' class probabilities.
    soft : bool
        False: a sparse one-hot of each member's argmax (hard votes); True: the
        probabilities themselves (a dense view).

    Returns
    -------
    ndarray or scipy.sparse.csr_array of shape (n, m * k)
    """
    n, m, k = values.shape
    if soft:
        return np.ascontiguousarray(values, dtype=np.float64).reshape(n, m * k)
    columns = (np.arange(m) * k + values.argmax(axis=2)).ravel()
    rows = np.repeat(np.arange(n), m)
    return sparse.csr_array((np.ones(n * m), (rows, columns)), shape=(n, m * k))


def _log_confusion_matrix(confusion: np.ndarray) -> np.ndarray:
    """(m, c, j) confusion matrices as the (m * k, k) matrix ``L[m k + j, c] = log pi_m[c, j]``,
    so that ``design @ L`` is each row's log-likelihood of its votes under each class."""
    m, k, _ = confusion.shape
    return np.log(confusion).transpose(0, 2, 1).reshape(m * k, k)


def _m_step(design, posteriors, w, n_members: int, smoothing: float):
    """Class prior (k,) and confusion matrices (m, c, j) from expected counts.

    ``smoothing`` is a Dirichlet pseudo-count added to every count (MAP estimate); the
    result is floored at crowd-kit's 1e-10 so that a zero count has a finite logarithm.
    """
    k = posteriors.shape[1]
    weighted = posteriors * w[:, None]
    prior = weighted.sum(axis=0) + smoothing
    prior = np.maximum(prior / prior.sum(), _CLIP)
    counts = np.asarray(design.T @ weighted).reshape(n_members, k, k).transpose(0, 2, 1)
    counts = np.maximum(counts + smoothing, _CLIP)
    return prior, counts / counts.sum(axis=2, keepdims=True)


@dataclass
class EMResult:
    """What :func:`dawid_skene_em` found."""

    posteriors: np.ndarray  # (n, k): the last E-step's posteriors (known rows fixed)
    prior: np.ndarray  # (k,)
    confusion: np.ndarray  # (m, k, k): confusion[m, c, j] = P(member m votes j | class c)
    n_iter: int  # E-steps run
    converged: bool
    objective: float  # per vote: expected log-likelihood + entropy + Dirichlet log-prior


def dawid_skene_em(
    design,
    n_members: int,
    init: np.ndarray,
    known=None,
    sample_weight=None,
    smoothing: float = 1.0,
    max_iter: int = 100,
    tol: float = 1e-5,
    start_from_known: bool = False,
) -> EMResult:
    """EM for the Dawid-Skene model, as crowd-kit's ``DawidSkene`` runs it.

    The row posteriors start at ``init`` (majority-vote fractions), then alternate:
    M-step (prior and confusion matrices from expected counts), E-step
    (``log posterior = log prior + design @ L``, one matrix product for all rows). Rows
    with a known label keep a posterior fixed to it (crowd-kit's golden labels). EM stops
    when the objective gains less than ``tol`` per vote (``tol=-inf``: run ``max_iter``).
    With ``start_from_known``, the first M-step reads the known rows alone (a supervised
    start) instead of ``init``.

    Parameters
    ----------
    design : ndarray or sparse matrix of shape (n, m * k)
        Votes from :func:`vote_design` (hard or soft).
    n_members : int
    init : ndarray of shape (n, k)
        Starting posteriors.
    known : ndarray of shape (n,), optional
        Class codes, -1 where unknown.
    sample_weight : ndarray of shape (n,), optional
        Each row's weight in the expected counts.
    smoothing : float
        Dirichlet pseudo-count on every confusion entry and class.
    max_iter : int
    tol : float
    start_from_known : bool

    Returns
    -------
    EMResult
    """
    n, k = init.shape
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    fixed = np.zeros(n, dtype=bool) if known is None else np.asarray(known) >= 0
    fixed_posteriors = np.eye(k)[np.asarray(known)[fixed]] if fixed.any() else None
    posteriors = np.array(init, dtype=np.float64)
    if fixed_posteriors is not None:
        posteriors[fixed] = fixed_posteriors
    first = w * fixed if start_from_known and fixed.any() else w
    prior, confusion = _m_step(design, posteriors, first, n_members, smoothing)
    previous, converged, n_iter = -np.inf, False, 0
    votes = w.sum() * n_members
    for _ in range(max_iter):
        logits = np.log(prior) + design @ _log_confusion_matrix(confusion)
        # The objective at (posteriors, parameters) EM holds now; each E or M step raises it.
        objective = (
            float(w @ (posteriors * logits).sum(axis=1) - w @ xlogy(posteriors, posteriors).sum(1))
            + smoothing * float(np.log(prior).sum() + np.log(confusion).sum())
        ) / votes
        if objective - previous < tol:
            converged = True
            break
        previous = objective
        posteriors = softmax(logits, axis=1)
        if fixed_posteriors is not None:
            posteriors[fixed] = fixed_posteriors
        prior, confusion = _m_step(design, posteriors, w, n_members, smoothing)
        n_iter += 1
    return EMResult(posteriors, prior, confusion, n_iter, converged, objective)


class DawidSkene(Combiner):
    """Dawid-Skene label model on the members' hard votes (each member's argmax).

    Each member m has a confusion matrix ``pi_m[c, j] = P(m votes j | true class c)``,
    members are independent given the class, and the class has a prior. EM fits them
    without labels (Dawid & Skene 1979), starting from majority-vote fractions, with a
    Dirichlet pseudo-count ``smoothing`` on every count. The output for a row is the
    posterior over classes given its votes::

        log P(c | votes) = log prior[c] + sum_m log pi_m[c, vote_m] + const

    With ``smoothing=0`` the fit is crowd-kit's ``DawidSkene`` (same start, same floor of
    1e-10, golden labels fixed the same way); only the stopping rule differs (crowd-kit
    counts the prior once per vote). With ``calibrate=False`` the output is that posterior.

    With ``calibrate=True`` (the default) a calibration sits on top of the EM fit: the
    output is ``softmax((scale_ * log P(c | votes) + bias_[c]) / temperature_)``. Members
    trained on the same rows err together, and a posterior that takes them as independent
    is far too sure (ten agreeing members multiply ten likelihood ratios); ``scale_`` and
    ``bias_`` are fitted without labels to the members' per-row median forecast (see
    :func:`fit_scale_and_bias`: the output then has the members' class balance and about
    their confidence; the EM fit itself is left as it is).

    Known labels (``y`` with None or NaN where missing) are used three times: EM starts from the
    confusion matrices of the known rows alone (``start="auto"``, when every class has a
    known row: a majority-vote start leads EM to the wrong mode when most members err
    alike), their rows' posteriors are fixed to the label in every E-step (so they shape
    the confusion matrices and the prior), and with ``calibrate=True`` ``temperature_`` is
    fitted on them, on top of the label-free calibration (shrunk toward 1, see
    :func:`fit_temperature`).

    Parameters
    ----------
    smoothing : float, default 1.0
        Dirichlet pseudo-count added to every confusion and prior count.
    max_iter : int, default 100
        Most EM iterations.
    tol : float, default 1e-5
        EM stops when its objective gains less than this per vote.
    start : {"auto", "majority"}, default "auto"
        "majority": EM starts from majority-vote fractions (crowd-kit's start); "auto": from
        the known rows' confusion matrices when every class has a known row, else the same.
    calibrate : bool, default True
        Calibrate the output to the members' median forecast (no labels), then fit its
        temperature on the known labels, if any; False: the EM posterior as it is.
    metric : str, default "auto"

    Attributes
    ----------
    prior_ : ndarray of shape (n_classes,)
        EM's class prior (before the calibration, which moves the output's balance).
    confusion_ : ndarray of shape (n_members, n_classes, n_classes)
        ``confusion_[m, c, j]``: probability that member m votes j when the class is c.
    scale_ : float
        Factor on the log-posterior (1.0 with ``calibrate=False``).
    bias_ : ndarray of shape (n_classes,)
        Added to the scaled log-posterior (zeros with ``calibrate=False``).
    temperature_ : float
        1.0 unless fitted on known labels.
    n_iter_ : int
        EM iterations run.
    converged_ : bool

    Examples
    --------
    >>> P = np.array([[[.9, .1], [.8, .2], [.4, .6]], [[.2, .8], [.3, .7], [.1, .9]]] * 5)
    >>> ds = DawidSkene().fit(P)
    >>> ds.predict(P)[:2].argmax(axis=1)
    array([0, 1])
    """

    needs_labels: ClassVar[bool] = False
    uses_features: ClassVar[str] = "none"
    _soft: ClassVar[bool] = False

    _parameter_constraints: ClassVar[dict] = {
        **Combiner._parameter_constraints,
        "smoothing": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "start": [StrOptions({"auto", "majority"})],
        "calibrate": ["boolean"],
    }

    def __init__(
        self, smoothing=1.0, max_iter=100, tol=1e-5, start="auto", calibrate=True, metric="auto"
    ):
        self.smoothing = smoothing
        self.max_iter = max_iter
        self.tol = tol
        self.start = start
        self.calibrate = calibrate
        self.metric = metric

    def _fit(self, values, y, sample_weight):
        _check_classification(self.task_, type(self).__name__)
        _, m, k = values.shape
        design = vote_design(values, soft=self._soft)
        # majority-vote fractions (hard) or the members' mean probabilities (soft)
        init = np.asarray(design @ np.tile(np.eye(k), (m, 1)))
        init /= np.maximum(init.sum(axis=1, keepdims=True), _EPS)
        labelled = np.flatnonzero(_labelled(y))
        supervised_start = (
            self.start == "auto" and len(labelled) > 0 and len(np.unique(y[labelled])) == k
        )
        result = dawid_skene_em(
            design,
            m,
            init,
            y,
            sample_weight,
            self.smoothing,
            self.max_iter,
            self.tol,
            start_from_known=supervised_start,
        )
        self.prior_ = result.prior
        self.confusion_ = result.confusion
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.scale_, self.bias_, self.temperature_ = _output_calibration(
            self._logits(values), values, y, sample_weight, self.calibrate
        )

    def _logits(self, values: np.ndarray) -> np.ndarray:
        """Unnormalised log-posteriors (n, k) before the calibration."""
        design = vote_design(values, soft=self._soft)
        return np.log(self.prior_) + design @ _log_confusion_matrix(self.confusion_)

    def _predict(self, values):
        logits = self.scale_ * self._logits(values) + self.bias_
        return softmax(logits / self.temperature_, axis=1)

    def _set_fitted_state(self, fitted: dict) -> None:
        m, k = len(self.members_), int(self.n_outputs_)
        prior = np.asarray(fitted.get("prior_"), dtype=np.float64)
        confusion = np.asarray(fitted.get("confusion_"), dtype=np.float64)
        if prior.shape != (k,) or not np.all(prior > 0) or not np.all(np.isfinite(prior)):
            raise ValueError(f"prior_ must be {k} positive numbers, however: prior_={prior!r}")
        if confusion.shape != (m, k, k) or not np.all(confusion > 0):
            raise ValueError(
                f"confusion_ must be {m}x{k}x{k} positive numbers, however: "
                f"confusion_.shape={confusion.shape}"
            )
        _check_calibration(fitted, k)
        bias = np.asarray(fitted["bias_"], dtype=np.float64)
        super()._set_fitted_state(
            {**fitted, "prior_": prior, "confusion_": confusion, "bias_": bias}
        )


class ProbabilisticDawidSkene(DawidSkene):
    """Dawid-Skene on the members' probabilities: each member's vote is fractional.

    A member that gives class j probability ``p_m(j)`` casts ``p_m(j)`` of a vote for j.
    The expected confusion counts use those fractions instead of one-hot votes, and a row's
    likelihood under class c is log-linear::

        log P(votes | c) = sum_m sum_j p_m(j) log pi_m[c, j]

    With that likelihood the fractional-count M-step is the exact maximiser of the same
    objective the E-step uses (expected log-likelihood of fractional votes plus the
    posteriors' entropy), so EM climbs one objective, as in the hard model (to which it
    reduces when every member is one-hot). The mixture form ``prod_m sum_j p_m(j)
    pi_m[c, j]`` would need an inner EM over each member's latent vote for its M-step. EM
    starts from the members' mean probabilities; parameters, known labels and temperature
    as in :class:`DawidSkene`.
    """

    _soft: ClassVar[bool] = True


# ---------------------------------------------------------------- spectral meta-learner
def rank_one_offdiagonal(Q: np.ndarray, max_iter: int = 200, tol: float = 1e-12) -> np.ndarray:
    """The vector r whose outer product best fits Q off its diagonal.

    Iterated principal-axis factoring with one factor: put ``r_i^2`` on Q's diagonal,
    take the leading eigenpair, repeat until the diagonal stops moving. The sign is chosen
    so that ``sum(r) >= 0`` (most members better than chance).

    Parameters
    ----------
    Q : ndarray of shape (m, m)
        Symmetric (a covariance).

    Returns
    -------
    ndarray of shape (m,)

    Examples
    --------
    >>> r = np.array([0.8, 0.5, 0.1, 0.6])
    >>> Q = np.outer(r, r) + np.diag([0.3, 0.6, 0.9, 0.5])  # diagonal is not rank one
    >>> np.round(rank_one_offdiagonal(Q), 6)
    array([0.8, 0.5, 0.1, 0.6])
    """
    R = np.array(Q, dtype=np.float64)
    r = np.zeros(len(R))
    for _ in range(max_iter):
        eigenvalues, eigenvectors = np.linalg.eigh(R)
        r = np.sqrt(max(eigenvalues[-1], 0.0)) * eigenvectors[:, -1]
        change = np.max(np.abs(r**2 - R.diagonal()))
        np.fill_diagonal(R, r**2)
        if change < tol:
            break
    return -r if r.sum() < 0 else r


class SpectralMetaLearner(Combiner):
    """Spectral meta-learner (Parisi, Strino, Nadler & Kluger 2014): weights from the
    members' vote covariance, without labels.

    For a binary task and members that err independently given the class, the covariance
    of their ±1 votes is, off its diagonal, rank one: ``Q_ij = (1 - b^2) v_i v_j`` with
    ``v_i = 2 pi_i - 1`` (``pi_i`` member i's balanced accuracy) and ``b = 2 P(y=1) - 1``.
    The rank-one factor is fitted off the diagonal (:func:`rank_one_offdiagonal`),
    ``b`` is taken from the members' prevalence (:func:`member_prevalence`), and ``v``
    gives ``balanced_accuracy_``. Each member's weight is the log-odds of its balanced
    accuracy, ``log((1 + v_i) / (1 - v_i))`` (the SML's weighted vote for a member as
    sensitive as it is specific), zero for a member no better than chance; weights are
    normalised.

    The votes (``votes="prevalence"``): member m votes for class c on the rows where its
    probability of c is in its top ``prevalence[c]`` fraction (weighted mid-ranks), so every
    member votes c as often as the class occurs. A calibrated member's argmax
    (``votes="argmax"``, the paper's votes) almost never lands on a class of 5%: its votes
    are then nearly constant, their covariance is carried by whichever member votes the
    rare class most (a miscalibrated one), and the weights follow it.

    Binary: one problem, class 1's votes (class 0's would be their mirror), both classes
    get its weights. Multiclass: one-vs-rest, each class c gets its own weights from its
    votes. The pool of the members' probabilities, renormalised over the classes::

        p(c) ∝ sum_m W[c, m] p_m(c)

    (for a binary task a weighted mean of the members) is, with ``calibrate=True``,
    calibrated without labels as ``softmax(scale_ * log p + bias_)`` to the members' median
    forecast (see :func:`fit_scale_and_bias`), then its temperature is fitted on known
    labels, if any (shrunk toward 1, see :func:`fit_temperature`); the weights never use
    labels.

    With fewer than three members the split of the factor between members is not
    identified (one off-diagonal entry), so the weights are arbitrary there. Members that
    err together (trained on the same rows) inflate the factor, so ``balanced_accuracy_`` is
    then too high; the weights' order is what they use.

    Parameters
    ----------
    votes : {"prevalence", "argmax"}, default "prevalence"
        How a member's probabilities become one-vs-rest votes (see above).
    calibrate : bool, default True
        Calibrate the pool to the members' median forecast (no labels), then fit its
        temperature on the known labels, if any; False: the pool as it is.
    metric : str, default "auto"

    Attributes
    ----------
    class_weights_ : ndarray of shape (n_classes, n_members)
        Non-negative, each row summing to one.
    balanced_accuracy_ : ndarray of shape (n_classes, n_members)
        Estimated one-vs-rest balanced accuracy of each member's votes (clipped to [0, 1]):
        the SML's label-free ranking of the members.
    prevalence_ : ndarray of shape (n_classes,)
        The class prevalence the votes and the factor's scale use.
    scale_ : float
    bias_ : ndarray of shape (n_classes,)
    temperature_ : float
    """

    needs_labels: ClassVar[bool] = False
    uses_features: ClassVar[str] = "none"

    _parameter_constraints: ClassVar[dict] = {
        **Combiner._parameter_constraints,
        "votes": [StrOptions({"prevalence", "argmax"})],
        "calibrate": ["boolean"],
    }

    def __init__(self, votes="prevalence", calibrate=True, metric="auto"):
        self.votes = votes
        self.calibrate = calibrate
        self.metric = metric

    def _votes(self, values: np.ndarray, c: int, w: np.ndarray) -> np.ndarray:
        """Members' ±1 votes for class c; shape (n, m)."""
        if self.votes == "argmax":
            return np.where(values.argmax(axis=2) == c, 1.0, -1.0)
        top = weighted_ranks(values[:, :, c], w) > 1 - self.prevalence_[c]
        return np.where(top, 1.0, -1.0)

    def _fit(self, values, y, sample_weight):
        _check_classification(self.task_, type(self).__name__)
        n, m, k = values.shape
        w = _row_weights(sample_weight, n)
        self.prevalence_ = member_prevalence(values, w)
        factor = np.zeros((k, m))
        for c in [1] if k == 2 else range(k):
            f = self._votes(values, c, w)
            centred = f - w @ f
            factor[c] = rank_one_offdiagonal(centred.T @ (centred * w[:, None]))
        if k == 2:
            factor[0] = factor[1]  # the mirror problem has the same covariance
        imbalance = np.clip(2 * self.prevalence_ - 1, -1 + 1e-6, 1 - 1e-6)
        v = factor / np.sqrt(1 - imbalance**2)[:, None]
        self.balanced_accuracy_ = np.clip((1 + v) / 2, 0.0, 1.0)
        v = np.clip(v, 0.0, 1 - 1e-3)  # a perfect member would get an infinite log-odds
        weights = np.log1p(v) - np.log1p(-v)
        total = weights.sum(axis=1, keepdims=True)
        # a class no member separates (say, never predicted) falls back to the plain mean
        self.class_weights_ = np.where(total > 0, weights / np.where(total > 0, total, 1), 1 / m)
        self.scale_, self.bias_, self.temperature_ = _output_calibration(
            self._log_pool(values), values, y, sample_weight, self.calibrate
        )

    def _pool(self, values: np.ndarray) -> np.ndarray:
        pool = np.einsum("nmk,km->nk", values, self.class_weights_)
        total = pool.sum(axis=1, keepdims=True)
        # a row where every weighted member gives its classes 0 gets the uniform answer
        return np.where(total > 0, pool / np.where(total > 0, total, 1), 1 / pool.shape[1])

    def _log_pool(self, values: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(self._pool(values), _EPS))

    def _predict(self, values):
        if self.scale_ == 1.0 and self.temperature_ == 1.0 and not np.any(self.bias_):
            return self._pool(values)
        logits = self.scale_ * self._log_pool(values) + self.bias_
        return softmax(logits / self.temperature_, axis=1)

    def used_members(self) -> np.ndarray:
        return np.any(np.asarray(self.class_weights_) > 0, axis=0)

    def _set_fitted_state(self, fitted: dict) -> None:
        m, k = len(self.members_), int(self.n_outputs_)
        weights = np.asarray(fitted.get("class_weights_"), dtype=np.float64)
        if weights.shape != (k, m) or not np.all(weights >= 0) or not np.all(np.isfinite(weights)):
            raise ValueError(
                f"class_weights_ must be {k}x{m} finite non-negative numbers, however: "
                f"class_weights_.shape={weights.shape}"
            )
        _check_calibration(fitted, k)
        bias = np.asarray(fitted["bias_"], dtype=np.float64)
        super()._set_fitted_state({**fitted, "class_weights_": weights, "bias_": bias})


# ---------------------------------------------------------------- consensus weighting
class ConsensusWeighting(WeightedAverage):
    """Members weighted by their agreement with the members' consensus; no labels needed.

    Each member's disagreement with the consensus (lower is better):

    - classification, ``agreement="log_prob"``: minus the mean log-probability it gives the
      consensus class (the argmax of the members' mean);
    - classification, ``agreement="kl"``: the mean KL divergence from the members' mean
      to the member;
    - regression: the mean squared distance to the members' median.

    Disagreements are divided by their median over members (so the temperature has no
    unit), and ``weight_m ∝ exp(-disagreement_m / temperature)``; or, with ``top_k``, the
    ``top_k`` most agreeing members weigh equally. The output is the weighted mean of the
    members (a :class:`WeightedAverage`).

    With ``temperature="auto"``: 0.2 without labels; with known labels, the temperature on a
    grid (0.2 times powers of two, 0.006 to 102) with the lowest log-loss (classification)
    or squared error (regression) on the known rows, plus a prior worth ``PRIOR_ROWS``
    rows that favours 0.2 (see :meth:`_best_temperature`), so a few labels move it but do
    not decide it alone.

    Parameters
    ----------
    agreement : {"log_prob", "kl"}, default "log_prob"
        Classification only.
    temperature : float or "auto", default "auto"
    top_k : int, optional
        Equal weights on the ``top_k`` most agreeing members instead of the softmax.
    metric : str, default "auto"

    Attributes
    ----------
    weights_ : ndarray of shape (n_members,)
    disagreement_ : ndarray of shape (n_members,)
        Each member's disagreement with the consensus, before scaling.
    temperature_ : float
        The temperature used (absent with ``top_k``).

    Examples
    --------
    >>> P = np.array([[[1.0], [1.2], [0.9], [5.0]], [[2.0], [2.1], [1.8], [-3.0]],
    ...               [[0.0], [0.1], [-0.1], [2.0]]])
    >>> ConsensusWeighting(top_k=2).fit(P).weights_  # the outlier (last) is left out
    array([0.5, 0.5, 0. , 0. ])
    """

    needs_labels: ClassVar[bool] = False
    uses_features: ClassVar[str] = "none"

    _parameter_constraints: ClassVar[dict] = {
        **WeightedAverage._parameter_constraints,
        "agreement": [StrOptions({"log_prob", "kl"})],
        "temperature": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "top_k": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(self, agreement="log_prob", temperature="auto", top_k=None, metric="auto"):
        self.agreement = agreement
        self.temperature = temperature
        self.top_k = top_k
        self.metric = metric

    def _disagreement(self, values: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Each member's weighted mean disagreement with the consensus; shape (m,)."""
        if not is_classification(self.task_):
            x = values[:, :, 0]
            return w @ (x - np.median(x, axis=1, keepdims=True)) ** 2
        consensus = values.mean(axis=1)  # (n, k)
        if self.agreement == "log_prob":
            chosen = consensus.argmax(axis=1)
            p = values[np.arange(len(values)), :, chosen]  # (n, m)
            return -(w @ np.log(np.maximum(p, _FLOOR)))
        q = np.maximum(consensus, _FLOOR)
        q /= q.sum(axis=1, keepdims=True)
        log_p = log_probabilities(values)
        kl = (q * np.log(q)).sum(axis=1)[:, None] - np.einsum("nk,nmk->nm", q, log_p)
        return w @ kl

    def _find_weights(self, values, y, sample_weight):
        n, m, _ = values.shape
        w = _row_weights(sample_weight, n)
        self.disagreement_ = self._disagreement(values, w)
        scale = np.median(self.disagreement_)
        scale = scale if scale > 0 else self.disagreement_.mean()
        scaled = self.disagreement_ / scale if scale > 0 else np.zeros(m)
        if self.top_k is not None:
            chosen = np.argsort(scaled, kind="stable")[: min(self.top_k, m)]
            weights = np.zeros(m)
            weights[chosen] = 1.0 / len(chosen)
            return weights
        temperature = self.temperature
        if temperature == "auto":
            temperature = _DEFAULT_TEMPERATURE
            labelled = np.flatnonzero(_labelled(y))
            if len(labelled):
                temperature = self._best_temperature(scaled, values, y, w, labelled)
        self.temperature_ = float(temperature)
        return _cut(softmax(-scaled / self.temperature_))

    def _best_temperature(self, scaled, values, y, w, labelled) -> float:
        """The grid temperature with the lowest loss on the known rows plus a prior worth
        ``PRIOR_ROWS`` rows for the default: the divergence of its predictions from the
        default's over all rows (cross-entropy, or squared distance for regression)."""
        weights = np.stack([_cut(softmax(-scaled / t)) for t in _TEMPERATURE_GRID])  # (g, m)
        pred = np.einsum("nmk,gm->gnk", values, weights)  # (g, n, k)
        default = pred[_TEMPERATURE_GRID == _DEFAULT_TEMPERATURE][0]  # (n, k)
        w_known = w[labelled] * (len(labelled) / w[labelled].sum())
        if is_classification(self.task_):
            p_true = pred[:, labelled, y[labelled]]
            known = -np.log(np.maximum(p_true, _EPS)) @ w_known
            prior = -np.einsum("nk,gnk->gn", default, np.log(np.maximum(pred, _EPS))) @ w
        else:
            known = (pred[:, labelled, 0] - y[labelled]) ** 2 @ w_known
            prior = (pred[:, :, 0] - default[:, 0]) ** 2 @ w
        return float(_TEMPERATURE_GRID[int(np.argmin(known + PRIOR_ROWS * prior))])


_DEFAULT_TEMPERATURE = 0.2
_TEMPERATURE_GRID = _DEFAULT_TEMPERATURE * 2.0 ** np.arange(-5, 10)  # 0.00625 to 102.4


def _cut(weights: np.ndarray) -> np.ndarray:
    """Weights with negligible shares set to zero, renormalised."""
    weights = np.where(weights >= _WEIGHT_CUTOFF * weights.sum(), weights, 0.0)
    return weights / weights.sum()


# ---------------------------------------------------------------- candidates
# `blend --unsupervised` without --method: the consensus weighting had the lowest label-free
# log-loss on three of four zoos (breast cancer, wine, digits; the spectral learner on churn)
# and, a weighted mean, takes regression too.
LABEL_FREE_DEFAULT = "consensus"


def candidates(metric="auto", random_state=0) -> dict[str, Combiner]:
    """The label-free combiners, unfitted, keyed by their CLI names.

    ``dawid_skene``, ``ds_proba`` and ``sml`` are for classification only (they raise on a
    regression task); ``consensus`` takes both. ``random_state`` is unused (all are
    deterministic).
    """
    return {
        "dawid_skene": DawidSkene(metric=metric),
        "ds_proba": ProbabilisticDawidSkene(metric=metric),
        "sml": SpectralMetaLearner(metric=metric),
        "consensus": ConsensusWeighting(metric=metric),
    }
