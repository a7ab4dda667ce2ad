"""Fusion: stacking with the original features passed through to the meta-model.

:class:`FeatureStacking` fits a meta-model on ``[members' signals, encoded X]``: the members'
predictions on the scale a model suits (values, logits of the positive class, or clipped
log-probabilities; see :func:`~ensemblex.combiners.stacking.member_signals`) next to the
features of :mod:`~ensemblex.combiners.features`. Seeing the features, the meta-model can
trust different members in different regions and correct what all of them miss.

Two meta-models:

- ``"linear"``: ridge (regression) or L2 logistic regression (binary, multinomial) on the
  standardised design, its penalty chosen by internal cross-validation; the fitted numbers
  are kept as arrays and applied with numpy.
- ``"lgbm"``: a strongly regularised LightGBM booster (shallow trees, large leaves, small
  steps, early stopping on an internal split) that starts from the members' mean
  prediction and learns corrections to it; kept as its model text.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from scipy.special import expit, logit, softmax
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from threadpoolctl import threadpool_limits

from ensemblex.combiners.base import Combiner, weighted_average
from ensemblex.combiners.features import encoded_width
from ensemblex.combiners.stacking import member_signals
from ensemblex.combiners.weighted import convex_weights
from ensemblex.tasks import is_classification

# Inverse L2 strengths the logistic meta-model chooses among (on the standardised design):
# strong penalties only, as the design holds every member's signal and every feature. With
# the grid up to 10 or 100, churn and stroke chose its top for no better test log-loss
# (stroke .1575 at C=10 against .1572 at C=1); wine quality chose 0.01 either way.
LOGISTIC_CS = np.logspace(-4, 0, 9)
RIDGE_ALPHAS = np.logspace(-4, 4, 17)
# The mean prediction the booster starts from is clipped before its logit.
_CLIP = 1e-6
# LightGBM settings for a meta-model: shallow trees with large leaves and small steps, so
# that it learns smooth corrections on a few thousand out-of-fold rows rather than noise.
LGBM_DEFAULTS = {
    "learning_rate": 0.05,
    "num_leaves": 7,
    "max_depth": 3,
    "min_data_in_leaf": 50,
    "lambda_l2": 10.0,
    "feature_fraction": 0.8,
    "max_bin": 63,
}


def _seed(random_state) -> int:
    """An int seed for LightGBM from an int, None or RandomState."""
    if isinstance(random_state, Integral):
        return int(random_state)
    return int(check_random_state(random_state).randint(2**31 - 1))


def _lightgbm():
    import lightgbm

    return lightgbm


class FeatureStacking(Combiner):
    """A meta-model on the members' predictions and the original features.

    Parameters
    ----------
    meta : {"linear", "lgbm"}, default "linear"
        ``"linear"``: ridge (regression) or logistic regression with a strong L2 penalty,
        chosen by internal cross-validation among ``LOGISTIC_CS`` or ``RIDGE_ALPHAS``.
        ``"lgbm"``: a LightGBM booster with ``LGBM_DEFAULTS`` (overridden by
        ``lgbm_params``).
    cv : int, default 5
        Folds of the internal cross-validation of the linear meta-model.
    start : {"mean", "weighted", "constant"}, default "mean"
        Where the booster starts: the members' mean or their :class:`Weighted` combination
        (as a logit, log-probabilities or the value), so that the trees learn corrections
        to it, or LightGBM's constant (the average label). Test log-loss from the mean
        against the constant: churn .3366 / .3379, wine quality .8347 / .8373, stroke
        .1579 / .1592 (california housing RMSE equal). From the static weights, early
        stopping kept 1 to 24 rounds (they were fitted on the validation rows too) and the
        result was about the static combiner's.
    max_rounds : int, default 500
        Boosting rounds at most.
    validation_fraction : float, default 0.2
        Share of rows held out to choose the number of rounds by early stopping (50
        rounds of patience); the booster is then refit on all rows. 0 trains
        ``max_rounds`` rounds on all rows.
    lgbm_params : dict, optional
        LightGBM parameters that replace the defaults.
    n_jobs : int, default 1
        LightGBM threads.
    metric : str, default "auto"
    random_state : int, default 0
        Seed of the inner folds, the validation split and LightGBM.

    Attributes
    ----------
    n_signals_ : int
        Columns of the design that come from the members (the rest are the features).
    design_mean_, design_scale_ : ndarray of shape (n_design,)
        Standardisation of the design (linear meta-model).
    coef_ : ndarray of shape (n_scores, n_design)
        Linear meta-model coefficients: one row for regression and binary (the positive
        class's logit), one per class seen in the fit for multiclass.
    intercept_ : ndarray of shape (n_scores,)
    score_classes_ : list of int
        Class codes of the rows of ``coef_`` (multiclass; classes absent from the fit get
        probability 0).
    penalty_ : float
        Chosen ridge alpha or logistic C.
    booster_ : str
        The LightGBM model as text (``lgbm``), loaded with ``lightgbm.Booster(model_str=)``.
    n_rounds_ : int
        Boosting rounds kept (``lgbm``).
    start_weights_ : ndarray of shape (n_members,)
        Member weights of the combination the booster starts from (``lgbm``).
    """

    _parameter_constraints: ClassVar[dict] = {
        **Combiner._parameter_constraints,
        "meta": [StrOptions({"linear", "lgbm"})],
        "cv": [Interval(Integral, 2, None, closed="left")],
        "start": [StrOptions({"weighted", "mean", "constant"})],
        "max_rounds": [Interval(Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "lgbm_params": [dict, None],
        "n_jobs": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    uses_features: ClassVar[str] = "required"

    def __init__(
        self,
        meta="linear",
        cv=5,
        start="mean",
        max_rounds=500,
        validation_fraction=0.2,
        lgbm_params=None,
        n_jobs=1,
        metric="auto",
        random_state=0,
    ):
        self.meta = meta
        self.cv = cv
        self.start = start
        self.max_rounds = max_rounds
        self.validation_fraction = validation_fraction
        self.lgbm_params = lgbm_params
        self.n_jobs = n_jobs
        self.metric = metric
        self.random_state = random_state

    # ------------------------------------------------------------ design
    def _design(self, values: np.ndarray, X: np.ndarray) -> np.ndarray:
        """``[signals, X]``: (n, m q + n_encoded), q as in ``member_signals``."""
        signals = member_signals(values, self.task_).reshape(len(values), -1)
        return np.hstack([signals, X])

    def _start(self, values: np.ndarray) -> np.ndarray:
        """The starting combination on the booster's raw scale: (n,) or (n, k) for multiclass."""
        mean = weighted_average(values, self.start_weights_)
        if self.task_ == "regression":
            return mean[:, 0]
        mean = np.clip(mean, _CLIP, 1 - _CLIP)
        if self.task_ == "binary":
            return logit(mean[:, 1])
        return np.log(mean)

    # ------------------------------------------------------------ fit
    def _fit(self, values, y, sample_weight, X):
        design = self._design(values, X)
        self.n_signals_ = design.shape[1] - X.shape[1]
        if self.meta == "linear":
            # One BLAS thread: on a 2-core machine the threads of the many small fits of the
            # inner cross-validation spun (breast cancer: 4 s of CPU against 0.16 s).
            with threadpool_limits(1, user_api="blas"):
                self._fit_linear(design, y, sample_weight)
        else:
            m = values.shape[1]
            if self.start == "weighted":
                self.start_weights_ = convex_weights(values, y, self.task_, sample_weight)[0]
            else:
                self.start_weights_ = np.full(m, 1.0 / m)
            self._fit_lgbm(design, self._start(values), y, sample_weight)

    def _inner_folds(self, y):
        if is_classification(self.task_):
            counts = np.bincount(y)
            folds = min(int(self.cv), int(counts[counts > 0].min()))
            if folds >= 2:
                return StratifiedKFold(folds, shuffle=True, random_state=self.random_state)
        return KFold(int(self.cv), shuffle=True, random_state=self.random_state)

    def _fit_linear(self, design, y, sample_weight):
        s = np.ones(len(y)) if sample_weight is None else sample_weight
        mean = (s @ design) / s.sum()
        scale = np.sqrt((s @ (design - mean) ** 2) / s.sum())
        scale = np.where(scale > 1e-12, scale, 1.0)
        Z = (design - mean) / scale
        self.design_mean_, self.design_scale_ = mean, scale
        if self.task_ == "regression":
            model = RidgeCV(alphas=RIDGE_ALPHAS).fit(Z, y, sample_weight=sample_weight)
            self.coef_ = np.asarray(model.coef_, dtype=np.float64)[None, :]
            self.intercept_ = np.atleast_1d(np.asarray(model.intercept_, dtype=np.float64))
            self.penalty_ = float(model.alpha_)
            self.score_classes_ = []
            return
        model = LogisticRegressionCV(
            Cs=LOGISTIC_CS,
            l1_ratios=(0.0,),
            cv=self._inner_folds(y),
            scoring="neg_log_loss",
            max_iter=1000,
            use_legacy_attributes=False,
        )
        with warnings.catch_warnings():
            # the weakest penalties of the path may stop at max_iter; the chosen one is strong
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(Z, y, sample_weight=sample_weight)
        coef = np.asarray(model.coef_, dtype=np.float64)
        intercept = np.asarray(model.intercept_, dtype=np.float64)
        if self.task_ == "multiclass" and len(model.classes_) == 2:
            # two classes seen: scikit-learn's one logit becomes the second class's score
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.concatenate([[0.0], intercept])
        self.coef_, self.intercept_ = coef, intercept
        self.penalty_ = float(np.ravel(model.C_)[0])
        self.score_classes_ = [int(c) for c in model.classes_]

    def _lgbm_params(self) -> dict:
        lgb_task = {
            "regression": {"objective": "regression"},
            "binary": {"objective": "binary"},
            "multiclass": {"objective": "multiclass", "num_class": int(self.n_outputs_)},
        }[self.task_]
        return {
            **LGBM_DEFAULTS,
            **(self.lgbm_params or {}),
            **lgb_task,
            "seed": _seed(self.random_state),
            "num_threads": int(self.n_jobs),
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }

    def _fit_lgbm(self, design, start, y, sample_weight):
        lgb = _lightgbm()
        params = self._lgbm_params()
        init = None if self.start == "constant" else start
        label = y.astype(np.float64)
        rounds = int(self.max_rounds)
        try:
            if self.validation_fraction > 0:
                rounds = self._early_stopping_rounds(design, label, init, sample_weight, params)
            train = lgb.Dataset(design, label, weight=sample_weight, init_score=init)
            booster = lgb.train(params, train, num_boost_round=rounds)
        except lgb.basic.LightGBMError as exc:
            raise ValueError(f"LightGBM failed to fit the FeatureStacking booster: {exc}") from None
        self.n_rounds_ = rounds
        self.booster_ = booster.model_to_string()
        self._booster = booster

    def _early_stopping_rounds(self, design, label, init, sample_weight, params) -> int:
        """Best number of rounds on a held-out share of the rows (stratified by class)."""
        lgb = _lightgbm()
        rows = np.arange(len(label))
        stratify = None
        if is_classification(self.task_):
            counts = np.bincount(label.astype(np.intp))
            present = int((counts > 0).sum())
            held_out = int(np.ceil(float(self.validation_fraction) * len(label)))
            # stratified only where every class can appear on both sides
            if counts[counts > 0].min() >= 2 and min(held_out, len(label) - held_out) >= present:
                stratify = label
        fit_rows, val_rows = train_test_split(
            rows,
            test_size=float(self.validation_fraction),
            random_state=self.random_state,
            stratify=stratify,
        )

        def part(r):
            return lgb.Dataset(
                design[r],
                label[r],
                weight=None if sample_weight is None else sample_weight[r],
                init_score=None if init is None else init[r],
                free_raw_data=False,
            )

        train = part(fit_rows)
        valid = part(val_rows)
        valid.reference = train
        booster = lgb.train(
            params,
            train,
            num_boost_round=int(self.max_rounds),
            valid_sets=[valid],
            callbacks=[lgb.early_stopping(50, verbose=False)],
        )
        return max(int(booster.best_iteration), 1)

    # ------------------------------------------------------------ predict
    def _predict(self, values, X):
        design = self._design(values, X)
        if self.meta == "linear":
            return self._predict_linear(design)
        raw = self._loaded_booster().predict(design, raw_score=True)
        if self.start != "constant":
            raw = raw + self._start(values)
        if self.task_ == "regression":
            return np.asarray(raw, dtype=np.float64).reshape(-1, 1)
        if self.task_ == "binary":
            p = expit(raw)
            return np.column_stack([1 - p, p])
        return softmax(raw, axis=1)

    def _predict_linear(self, design):
        Z = (design - self.design_mean_) / self.design_scale_
        scores = Z @ np.asarray(self.coef_).T + self.intercept_
        if self.task_ == "regression":
            return scores[:, :1]
        if self.task_ == "binary":
            p = expit(scores[:, 0])
            return np.column_stack([1 - p, p])
        proba = np.zeros((len(design), self.n_outputs_))
        proba[:, self.score_classes_] = softmax(scores, axis=1)  # unseen classes stay at 0
        return proba

    def _loaded_booster(self):
        booster = getattr(self, "_booster", None)
        if booster is None:
            lgb = _lightgbm()
            try:
                booster = lgb.Booster(model_str=self.booster_)
            except lgb.basic.LightGBMError as exc:
                raise ValueError(
                    f"booster_ must be a LightGBM model string, however LightGBM says: {exc}"
                ) from None
            self._booster = booster
        return booster

    # ------------------------------------------------------------ state
    def _set_fitted_state(self, fitted: dict) -> None:
        super()._set_fitted_state(fitted)
        self._booster = None
        if self.meta == "lgbm":
            if not isinstance(fitted.get("booster_"), str):
                raise ValueError("the FeatureStacking state must hold booster_ as a model string")
            weights = np.asarray(fitted.get("start_weights_"), dtype=np.float64)
            if weights.shape != (len(self.members_),) or not np.all(np.isfinite(weights)):
                raise ValueError(
                    f"start_weights_ must be {len(self.members_)} finite numbers, however: "
                    f"start_weights_={fitted.get('start_weights_')!r}"
                )
            self.start_weights_ = weights
            # fail at load time, not at the first prediction
            width = self.n_signals_ + encoded_width(self.feature_encoding_)
            if self._loaded_booster().num_feature() != width:
                raise ValueError(
                    f"booster_ must read {width} columns (members' signals and features), "
                    f"however it reads {self._loaded_booster().num_feature()}"
                )
            return
        coef = np.asarray(fitted.get("coef_"), dtype=np.float64)
        mean = np.asarray(fitted.get("design_mean_"), dtype=np.float64)
        scale = np.asarray(fitted.get("design_scale_"), dtype=np.float64)
        if coef.ndim != 2 or mean.shape != (coef.shape[1],) or scale.shape != mean.shape:
            raise ValueError(
                "coef_ (n_scores, n_design), design_mean_ and design_scale_ (n_design,) must "
                f"agree, however: shapes {coef.shape}, {mean.shape}, {scale.shape}"
            )
        self.coef_, self.design_mean_, self.design_scale_ = coef, mean, scale


def candidates(metric="auto", random_state=0) -> dict[str, Combiner]:
    """The fusion combiners by CLI name (unfitted); both read the features ``X``."""
    return {
        "stack_features": FeatureStacking(meta="linear", metric=metric, random_state=random_state),
        "stack_features_lgbm": FeatureStacking(
            meta="lgbm", metric=metric, random_state=random_state
        ),
    }
