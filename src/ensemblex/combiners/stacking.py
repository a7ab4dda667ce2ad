"""Stacking: a regularised scikit-learn meta-model over the members' predictions.

With its options on, this is the four-stage pipeline of "Regularized Meta-Learning for
Improved Generalization": (a) redundancy pruning of near-duplicate members, (b) statistical
meta-features across members, (c) cross-validated regularised meta-models, (d) blending of
those meta-models with weights inversely proportional to their cross-validated error.
"""

from __future__ import annotations

import warnings
from itertools import combinations
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from scipy.special import logit
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import (
    ElasticNetCV,
    LassoCV,
    LassoLarsCV,
    LogisticRegression,
    RidgeCV,
)
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import SplineTransformer, StandardScaler
from sklearn.utils._param_validation import Interval, StrOptions

from ensemblex.combiners.base import Combiner, member_losses
from ensemblex.tasks import is_classification

# Probabilities are clipped before logits so that 0 and 1 stay finite; on letter recognition
# 1e-3 gave a better multinomial meta-model than 1e-6 (test log-loss .072 vs .076), on adult
# and churn the two were within 0.1%.
_CLIP = 1e-3
_QUANTILES = (0.25, 0.5, 0.75)
REGRESSION_LEARNERS = ("ridge", "lasso", "elasticnet")
CLASSIFICATION_LEARNERS = ("logistic",)
BASES = ("linear", "spline")  # how the meta-model reads each member's signal
_SPLINE_DEGREE = 3
# A meta-model's state: the classes it may be, and the fitted numbers that predict with it.
_META_MODELS = {
    cls.__name__: cls for cls in (RidgeCV, LassoLarsCV, LassoCV, ElasticNetCV, LogisticRegression)
}
_SCALER_FITTED = ("mean_", "scale_", "var_", "n_samples_seen_", "n_features_in_")
_MODEL_FITTED = ("coef_", "intercept_", "classes_", "n_features_in_", "alpha_", "l1_ratio_")


def member_signals(values: np.ndarray, task: str) -> np.ndarray:
    """The members' predictions on the scale a linear meta-model suits.

    Input: (n, m, k). Output: (n, m, q) with q = 1 for regression (values) and binary
    (logit of the positive class), q = k for multiclass (log-probabilities).
    """
    if task == "regression":
        return values
    p = np.clip(values, _CLIP, 1 - _CLIP)
    if task == "binary":
        return logit(p[:, :, 1:])
    return np.log(p)


def meta_features(signals: np.ndarray) -> np.ndarray:
    """Row-wise mean, std, min, max and quartiles across members.

    Input: (n, m, q). Output: (n, 7q).
    """
    stats = [signals.mean(axis=1), signals.std(axis=1), signals.min(axis=1), signals.max(axis=1)]
    stats += list(np.quantile(signals, _QUANTILES, axis=1))
    return np.concatenate(stats, axis=1)


def interaction_features(signals: np.ndarray, top: list[int]) -> np.ndarray:
    """Pairwise products of the ``top`` members' signals. Output (n, C(len(top), 2) * q)."""
    pairs = list(combinations(top, 2))
    if not pairs:
        return np.empty((signals.shape[0], 0))
    return np.concatenate([signals[:, a] * signals[:, b] for a, b in pairs], axis=1)


def spline_knots(inputs: np.ndarray, n_knots: int) -> np.ndarray:
    """Knots ``(n_knots, n_columns)`` at the quantiles of each column of ``inputs``, strictly
    increasing as scikit-learn's ``SplineTransformer`` needs: evenly spaced between the
    column's extremes where quantiles repeat (a member with few distinct values), and steps
    of 1 from its value where a column is constant (larger where 1 would be lost to rounding)."""
    knots = np.quantile(inputs, np.linspace(0.0, 1.0, n_knots), axis=0)
    low, high = inputs.min(axis=0), inputs.max(axis=0)
    repeated = ~np.all(np.diff(knots, axis=0) > 0, axis=0)
    knots[:, repeated] = np.linspace(low, high, n_knots)[:, repeated]
    constant = ~np.all(np.diff(knots, axis=0) > 0, axis=0)
    step = np.maximum(1.0, 4 * np.spacing(np.abs(low[constant])))  # steps that stay distinct
    knots[:, constant] = low[constant] + np.arange(n_knots, dtype=float)[:, None] * step
    return knots


def condition_number(X: np.ndarray) -> float:
    """Condition number of the column-standardised design ``X`` (n, p), via its Gram matrix."""
    std = X.std(axis=0)
    if not np.any(std > 0):
        return float("inf")  # every column constant: no direction is identified
    Z = (X[:, std > 0] - X[:, std > 0].mean(axis=0)) / std[std > 0]
    eig = np.linalg.eigvalsh(Z.T @ Z)
    return float(np.sqrt(eig[-1] / eig[0])) if eig[0] > 0 else float("inf")


def _weight_params(sample_weight) -> dict:
    """Route ``sample_weight`` to the meta-model, the last step of its pipeline."""
    return {} if sample_weight is None else {"model__sample_weight": sample_weight}


def _cv_rmse(pipeline) -> float:
    """Cross-validated RMSE at the chosen regularisation, read off the fitted CV learner.

    RidgeCV keeps its leave-one-out MSE, the Lasso and ElasticNet learners their K-fold MSE path:
    reusing them costs nothing, where a second cross-validation around each would multiply
    the fit time by the number of folds.
    """
    model = pipeline.named_steps["model"]
    if isinstance(model, RidgeCV):
        return float(np.sqrt(-model.best_score_))
    mse = model.mse_path_.mean(axis=-1)  # (.., n_alphas, n_folds) -> mean over folds
    return float(np.sqrt(mse.min()))


class Stacking(Combiner):
    """A regularised linear meta-model over members' predictions.

    Parameters
    ----------
    meta_learner : str or tuple of str, default "auto"
        ``"ridge"``, ``"lasso"``, ``"elasticnet"`` (regression, each with its
        regularisation chosen by cross-validation) or ``"logistic"`` (classification,
        multinomial on logits); ``"auto"`` is ridge or logistic, ``"all"`` every learner of
        the task. Several regression learners are blended with weights proportional to
        1 / their cross-validated RMSE.
    prune_threshold : float, optional
        Redundancy pruning: going from the best member down, drop a member whose
        predictions correlate above this with a better kept member's and whose error is
        within ``prune_tolerance`` of it. ``None`` keeps every member. The paper uses 0.95.
    prune_tolerance : float, default 0.01
        How close (relative) an error must be for a correlated member to be dropped.
    basis : {"linear", "spline"}, default "linear"
        How the meta-model reads each member's signal: as is, or through a cubic B-spline
        basis (``n_knots`` knots at its quantiles, linear beyond them; the members' row mean
        gets one too), so that a member may be trusted more in one range of its predictions
        than in another. The spline columns are not standardised (other columns, such as
        meta-features, are): B-splines on their own [0, 1] scale gave lower nested and test
        RMSE on California housing and diamonds. Knots ignore ``sample_weight``.
    n_knots : int, default 4
        Knots per signal with ``basis="spline"``.
    meta_features : bool, default False
        Add row-wise mean, std, min, max and quartiles across members as features.
    interactions : int, default 0
        Add pairwise products of the signals of this many best members.
    C : float or "auto", default "auto"
        Inverse L2 strength of the logistic meta-model (features are standardised).
        ``"auto"`` is 1.0 for binary and 0.1 for multiclass, whose meta-design has one column
        per member per class and needs the stronger penalty (letter recognition, 32 members:
        test log-loss .072 at 0.1 against .097 at 1.0).
    cv : int, default 5
        Folds of the inner cross-validation used by the regularised learners and blending.
    metric : str, default "auto"
        Metric that ranks members for pruning and interactions.
    random_state : int, default 0

    Attributes
    ----------
    spline_knots_ : ndarray or None
        The knots ``(n_knots, n_inputs)`` of the spline basis (None with ``basis="linear"``).
    kept_members_ : list of str
    kept_indices_ : list of int
        Indices of the kept members.
    interaction_indices_ : list of int
        Indices of the members whose signals are multiplied pairwise.
    dropped_members_ : dict of str to str
        Each dropped member and the better member it duplicated.
    condition_number_before_, condition_number_after_ : float
        Condition number of the standardised member design before and after pruning.
    meta_learners_ : list of str
    meta_models_ : list of fitted pipelines
        StandardScaler then the learner, one per name in ``meta_learners_``. In the state
        (:meth:`get_state`) each is its fitted numbers (the scaler's mean and scale, the
        learner's coefficients and intercept); a loaded one predicts the same to the bit but
        no longer holds its cross-validation path.
    blend_weights_ : ndarray
        Weight of each meta-model.
    meta_errors_ : ndarray
        Cross-validated error of each meta-model (when several are blended).

    See Also
    --------
    Stacking.regularized : the paper's four-stage configuration.
    """

    _parameter_constraints: ClassVar[dict] = {
        **Combiner._parameter_constraints,
        "meta_learner": [
            StrOptions({"auto", "all", *REGRESSION_LEARNERS, *CLASSIFICATION_LEARNERS}),
            list,
            tuple,
        ],
        "prune_threshold": [Interval(Real, -1, 1, closed="both"), None],
        "prune_tolerance": [Interval(Real, 0, None, closed="left")],
        "basis": [StrOptions(set(BASES))],
        "n_knots": [Interval(Integral, 2, None, closed="left")],
        "meta_features": ["boolean"],
        "interactions": [Interval(Integral, 0, None, closed="left")],
        "C": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "cv": [Interval(Integral, 2, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        meta_learner="auto",
        prune_threshold=None,
        prune_tolerance=0.01,
        basis="linear",
        n_knots=4,
        meta_features=False,
        interactions=0,
        C="auto",
        cv=5,
        metric="auto",
        random_state=0,
    ):
        self.meta_learner = meta_learner
        self.prune_threshold = prune_threshold
        self.prune_tolerance = prune_tolerance
        self.basis = basis
        self.n_knots = n_knots
        self.meta_features = meta_features
        self.interactions = interactions
        self.C = C
        self.cv = cv
        self.metric = metric
        self.random_state = random_state

    @classmethod
    def regularized(cls, **kwargs) -> Stacking:
        """The four-stage pipeline: prune at 0.95, meta-features, top-3 interactions, and
        (for regression) ridge, lasso and elastic net blended by inverse error."""
        params = dict(prune_threshold=0.95, meta_features=True, interactions=3, meta_learner="all")
        params.update(kwargs)
        return cls(**params)

    # ------------------------------------------------------------ fit
    def _learner_names(self) -> list[str]:
        allowed = CLASSIFICATION_LEARNERS if is_classification(self.task_) else REGRESSION_LEARNERS
        if self.meta_learner == "auto":
            return [allowed[0]]
        if self.meta_learner == "all":
            return list(allowed)
        names = (
            [self.meta_learner] if isinstance(self.meta_learner, str) else list(self.meta_learner)
        )
        bad = [name for name in names if name not in allowed]
        if bad or not names:
            raise ValueError(
                f"meta_learner for {self.task_} must be 'auto', 'all' or among {allowed}, "
                f"however: meta_learner={self.meta_learner!r}"
            )
        return names

    def _make_learner(self, name: str, weighted: bool) -> Pipeline:
        inner = KFold(self.cv, shuffle=True, random_state=self.random_state)
        if name == "ridge":
            learner = RidgeCV(alphas=np.logspace(-4, 4, 17))
        elif name == "lasso" and not weighted:
            # The LARS path is exact and fast on the collinear designs members make, where
            # coordinate descent needs many passes near small penalties.
            learner = LassoLarsCV(cv=inner)
        elif name == "lasso":  # LassoLarsCV takes no sample weights
            learner = LassoCV(cv=inner, eps=1e-6, alphas=30, tol=1e-3, max_iter=5000)
        elif name == "elasticnet":
            learner = ElasticNetCV(
                l1_ratio=(0.5, 0.9),
                cv=inner,
                eps=1e-6,
                alphas=30,
                tol=1e-3,
                precompute=True,
                max_iter=5000,
            )
        else:
            C = self.C if self.C != "auto" else (1.0 if self.task_ == "binary" else 0.1)
            learner = LogisticRegression(C=C, max_iter=2000)
        return Pipeline([("scale", StandardScaler()), ("model", learner)])

    def _fit_learner(self, name: str, X: np.ndarray, y, sample_weight) -> Pipeline:
        """One meta-model on the design ``X``: standardised, but for the spline columns,
        which keep their own [0, 1] scale (see ``basis``)."""
        pipeline = self._make_learner(name, weighted=sample_weight is not None)
        if self.spline_knots_ is None:
            return pipeline.fit(X, y, **_weight_params(sample_weight))
        scaler, learner = pipeline.named_steps["scale"], pipeline.named_steps["model"]
        scaler.fit(X)
        n_spline = self._spline_basis().n_features_out_
        scaler.mean_[:n_spline], scaler.scale_[:n_spline] = 0.0, 1.0
        scaler.var_[:n_spline] = 1.0
        weights = {} if sample_weight is None else {"sample_weight": sample_weight}
        learner.fit(scaler.transform(X), y, **weights)
        return pipeline

    def _fit(self, values, y, sample_weight):
        names = self._learner_names()
        losses = member_losses(self.metric_, values, y, sample_weight)
        signals = member_signals(values, self.task_)
        kept = self._prune(values, losses)
        self.kept_members_ = [self.members_[j] for j in kept]
        self.kept_indices_ = kept
        flat = signals.reshape(len(y), -1)
        self.condition_number_before_ = condition_number(flat)
        self.condition_number_after_ = condition_number(signals[:, kept].reshape(len(y), -1))
        order = np.argsort(losses[kept], kind="stable")
        self.interaction_indices_ = [kept[j] for j in order[: max(int(self.interactions), 0)]]
        self.spline_knots_ = None
        if self.basis == "spline":
            self.spline_knots_ = spline_knots(self._spline_inputs(signals), int(self.n_knots))
        X = self._features(values)
        self.meta_learners_ = names
        with warnings.catch_warnings():
            # Coordinate descent warns at the smallest penalties of the path on collinear
            # member predictions; the cross-validated choice is made among all penalties.
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.meta_models_ = [self._fit_learner(name, X, y, sample_weight) for name in names]
        if len(names) > 1:
            self.meta_errors_ = np.array([_cv_rmse(model) for model in self.meta_models_])
            inverse = 1.0 / np.maximum(self.meta_errors_, np.finfo(float).tiny)
            self.blend_weights_ = inverse / inverse.sum()
        else:
            self.meta_errors_ = np.array([np.nan])
            self.blend_weights_ = np.ones(1)

    def _prune(self, values: np.ndarray, losses: np.ndarray) -> list[int]:
        m = values.shape[1]
        self.dropped_members_ = {}
        if self.prune_threshold is None or m == 1:
            return list(range(m))
        flat = values.transpose(1, 0, 2).reshape(m, -1)
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.nan_to_num(np.corrcoef(flat), nan=0.0)
        kept: list[int] = []
        for j in np.argsort(losses, kind="stable"):
            for better in kept:
                close = losses[j] - losses[better] <= self.prune_tolerance * abs(losses[better])
                if corr[j, better] > self.prune_threshold and close:
                    self.dropped_members_[self.members_[j]] = self.members_[better]
                    break
            else:
                kept.append(int(j))
        return sorted(kept)

    def _features(self, values: np.ndarray) -> np.ndarray:
        signals = member_signals(values, self.task_)
        kept = signals[:, self.kept_indices_]
        if self.spline_knots_ is None:
            parts = [kept.reshape(len(values), -1)]
        else:
            parts = [self._spline_basis().transform(self._spline_inputs(signals))]
        if self.meta_features:
            parts.append(meta_features(kept))
        if self.interaction_indices_:
            parts.append(interaction_features(signals, self.interaction_indices_))
        return np.concatenate(parts, axis=1)

    def _spline_inputs(self, signals: np.ndarray) -> np.ndarray:
        """What the spline basis expands: the kept members' signals and their row mean."""
        kept = signals[:, self.kept_indices_]
        return np.concatenate([kept.reshape(len(signals), -1), kept.mean(axis=1)], axis=1)

    def _spline_basis(self) -> SplineTransformer:
        """scikit-learn's B-splines on the fitted knots (built from them once, so a loaded
        combiner needs only the knots)."""
        basis = getattr(self, "_basis", None)
        if basis is None or basis[0] is not self.spline_knots_:
            knots = np.asarray(self.spline_knots_, dtype=float)
            transformer = SplineTransformer(
                degree=_SPLINE_DEGREE, knots=knots, extrapolation="linear"
            ).fit(knots)
            basis = self._basis = (self.spline_knots_, transformer)
        return basis[1]

    # ------------------------------------------------------------ predict
    def _predict(self, values):
        X = self._features(values)
        out = np.zeros((len(values), self.n_outputs_))
        for weight, model in zip(self.blend_weights_, self.meta_models_):
            out += weight * self._model_output(model, X)
        return out

    def used_members(self) -> np.ndarray:
        # the meta-model reads only the members kept by redundancy pruning
        used = np.zeros(len(self.members_), dtype=bool)
        used[list(self.kept_indices_)] = True
        return used

    def _model_output(self, model, X):
        # The pipeline's arithmetic in numpy (scale, linear map, logistic or softmax): the
        # same numbers as its predict / predict_proba, without 1 ms of input validation per
        # call, which is most of a served row's combiner time.
        scaler, learner = model.named_steps["scale"], model.named_steps["model"]
        Z = (X - scaler.mean_) / scaler.scale_
        decision = Z @ np.asarray(learner.coef_).T + learner.intercept_
        if not is_classification(self.task_):
            return decision.reshape(len(X), 1)
        if decision.ndim == 1 or decision.shape[1] == 1:
            from scipy.special import expit

            positive = expit(decision.reshape(-1))
            fitted = np.stack([1.0 - positive, positive], axis=1)
        else:
            fitted = np.exp(decision - decision.max(axis=1, keepdims=True))
            fitted /= fitted.sum(axis=1, keepdims=True)
        proba = np.zeros((len(X), self.n_outputs_))
        proba[:, learner.classes_] = fitted  # classes unseen in fit stay at 0
        return proba

    # ------------------------------------------------------------ state
    def _fitted_state(self) -> dict:
        """Each meta-model as its fitted numbers, so that no estimator is pickled."""
        fitted = super()._fitted_state()
        fitted["meta_models_"] = [
            {
                "model": type(pipeline.named_steps["model"]).__name__,
                "scale": _attributes(pipeline.named_steps["scale"], _SCALER_FITTED),
                "fitted": _attributes(pipeline.named_steps["model"], _MODEL_FITTED),
            }
            for pipeline in self.meta_models_
        ]
        return fitted

    def _set_fitted_state(self, fitted: dict) -> None:
        """Rebuild each meta-model as the learner it was, holding its fitted numbers."""
        self._validate_params()  # a state's params (n_knots, basis, ...) as the constructor's
        meta = fitted.pop("meta_models_", None)
        names = fitted.get("meta_learners_")
        if not isinstance(meta, list) or not isinstance(names, list) or len(meta) != len(names):
            raise ValueError("the Stacking state must hold one meta-model per meta-learner")
        missing = {"kept_indices_", "interaction_indices_", "blend_weights_"} - set(fitted)
        if missing:
            raise ValueError(f"the Stacking state lacks {sorted(missing)}")
        m = len(self.members_)
        indices = [*fitted["kept_indices_"], *fitted["interaction_indices_"]]
        if not all(isinstance(j, int) and 0 <= j < m for j in indices):
            raise ValueError(f"kept and interaction indices must be integers in [0, {m})")
        fitted.setdefault("spline_knots_", None)  # states saved before the spline basis
        self._check_knots(fitted["spline_knots_"], len(fitted["kept_indices_"]))
        super()._set_fitted_state(fitted)
        self.meta_models_ = [self._meta_model_from_state(n, s) for n, s in zip(names, meta)]

    def _check_knots(self, knots, n_kept: int) -> None:
        """Knots as :meth:`_spline_inputs` needs them: one strictly increasing column per
        kept member's signal and per mean signal, with ``basis="spline"``; none otherwise."""
        if self.basis != "spline":
            if knots is not None:
                raise ValueError("the Stacking state holds spline knots but basis='linear'")
            return
        per_member = 1 if self.task_ == "binary" else self.n_outputs_  # as member_signals
        shape = (int(self.n_knots), (n_kept + 1) * per_member)
        knots = None if knots is None else np.asarray(knots)
        if (
            knots is None
            or knots.shape != shape
            or not np.issubdtype(knots.dtype, np.floating)
            or not np.all(np.isfinite(knots))
            or not np.all(np.diff(knots, axis=0) > 0)
        ):
            raise ValueError(
                f"the Stacking state's spline_knots_ must be finite floats of shape {shape}, "
                "increasing down each column"
            )

    def _meta_model_from_state(self, name: str, state: dict) -> Pipeline:
        model_class = state.get("model") if isinstance(state, dict) else None
        if model_class not in _META_MODELS:
            raise ValueError(
                f"a meta-model must be one of {list(_META_MODELS)}, however: {model_class!r}"
            )
        pipeline = self._make_learner(name, weighted=model_class == "LassoCV")
        if type(pipeline.named_steps["model"]).__name__ != model_class:
            raise ValueError(f"meta-learner {name!r} cannot be a {model_class}")
        scaler = pipeline.named_steps["scale"]
        _set_attributes(scaler, state.get("scale"), _SCALER_FITTED)
        _set_attributes(pipeline.named_steps["model"], state.get("fitted"), _MODEL_FITTED)
        mean, scale = getattr(scaler, "mean_", None), getattr(scaler, "scale_", None)
        if not (
            isinstance(mean, np.ndarray)
            and isinstance(scale, np.ndarray)
            and mean.ndim == 1
            and mean.shape == scale.shape
            and np.all(np.isfinite(mean))
            and np.all(np.isfinite(scale) & (scale > 0))
        ):
            raise ValueError(
                f"meta-learner {name!r}: its scaler must hold a finite mean_ and a positive "
                "scale_ of one length"
            )
        return pipeline


def _attributes(estimator, names) -> dict:
    return {name: getattr(estimator, name) for name in names if hasattr(estimator, name)}


def _set_attributes(estimator, values, allowed) -> None:
    if not isinstance(values, dict) or not set(values) <= set(allowed):
        raise ValueError(
            f"{type(estimator).__name__} state must be a dict of {list(allowed)}, however: "
            f"{sorted(values) if isinstance(values, dict) else values!r}"
        )
    for name, value in values.items():
        setattr(estimator, name, value)
