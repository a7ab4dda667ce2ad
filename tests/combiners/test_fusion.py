"""FeatureStacking: a meta-model on the members' predictions and the original features."""

import json

import lightgbm
import numpy as np
import pandas as pd
import pytest
from feature_zoo import FeatureZoo, scaled
from scipy.special import expit, logit, softmax
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, Ridge, RidgeCV
from sklearn.model_selection import StratifiedKFold
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from threadpoolctl import threadpool_limits

from ensemblex import Mean, Predictions, Stacking, Weighted
from ensemblex.combiners import Combiner
from ensemblex.combiners.features import encode_features, fit_feature_encoding
from ensemblex.combiners.fusion import LOGISTIC_CS, RIDGE_ALPHAS, FeatureStacking, candidates
from ensemblex.combiners.stacking import member_signals
from ensemblex.metrics import get_metric


@pytest.fixture(scope="module", params=["regression", "binary", "multiclass"])
def feature_zoo(request):
    if request.param == "regression":
        X, y = load_diabetes(return_X_y=True)
        members = [
            scaled(Ridge(1.0)),
            scaled(KNeighborsRegressor(10)),
            DecisionTreeRegressor(max_depth=3, random_state=0),
        ]
        return FeatureZoo(X, y, members, "regression")
    loader, task = (
        (load_breast_cancer, "binary") if request.param == "binary" else (load_wine, "multiclass")
    )
    X, y = loader(return_X_y=True)
    members = [
        scaled(LogisticRegression(C=0.05)),
        scaled(KNeighborsClassifier(10)),
        GaussianNB(),
        DecisionTreeClassifier(max_depth=2, random_state=0),
    ]
    return FeatureZoo(X, y, members, task, classes=np.unique(y))


def _design(P, X, encoding):
    signals = member_signals(P.values, P.task).reshape(P.n_samples, -1)
    return np.hstack([signals, encode_features(encoding, X)])


def hidden_feature(task: str, n: int, seed: int):
    """The truth reads x0 and x1; both members see only x0. Returns P, y, X (n, 3)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    score = X[:, 0] + 1.5 * X[:, 1]
    if task == "regression":
        y = score + 0.2 * rng.standard_normal(n)
        P = np.stack([X[:, 0] + 0.3 * rng.standard_normal(n), 0.9 * X[:, 0]], axis=1)[..., None]
        return P, y, X
    y = (rng.uniform(size=n) < expit(2 * score)).astype(int)
    p1 = np.stack([expit(2 * X[:, 0]), expit(1.5 * X[:, 0] + 0.2)], axis=1)
    return np.stack([1 - p1, p1], axis=2), y, X


# ---------------------------------------------------------------- the linear meta-model


def test_linear_meta_model_equals_scikit_learn_on_the_same_design(feature_zoo):
    z = feature_zoo
    fused = FeatureStacking(meta="linear").fit(z.oof, z.y, X=z.X)
    encoding = fit_feature_encoding(z.X)
    design, design_test = _design(z.oof, z.X, encoding), _design(z.test, z.X_test, encoding)
    with threadpool_limits(1, user_api="blas"):  # as the combiner does; threads only spin
        expected, penalty = _reference(design, design_test, z)
    np.testing.assert_allclose(fused.predict(z.test, X=z.X_test), expected, rtol=1e-6, atol=1e-8)
    assert fused.penalty_ == pytest.approx(penalty)
    if z.task != "regression":
        np.testing.assert_allclose(fused.predict(z.test, X=z.X_test).sum(axis=1), 1.0)
    assert fused.used_members().all()


def _reference(design, design_test, z):
    """scikit-learn's fit on the standardised design: its test predictions and penalty."""
    scaler = StandardScaler().fit(design)
    Z, Z_test = scaler.transform(design), scaler.transform(design_test)
    if z.task == "regression":
        ridge = RidgeCV(alphas=RIDGE_ALPHAS).fit(Z, z.y)
        return ridge.predict(Z_test)[:, None], ridge.alpha_
    model = LogisticRegressionCV(
        Cs=LOGISTIC_CS,
        l1_ratios=(0.0,),
        cv=StratifiedKFold(5, shuffle=True, random_state=0),
        scoring="neg_log_loss",
        max_iter=1000,
        use_legacy_attributes=False,
    ).fit(Z, z.y)
    return model.predict_proba(Z_test), model.C_


def test_linear_meta_model_round_trip_and_missing_class():
    z_X, z_y = load_wine(return_X_y=True)
    members = [scaled(LogisticRegression(C=0.05)), GaussianNB()]
    z = FeatureZoo(z_X, z_y, members, "multiclass", classes=np.arange(3))
    keep = z.y != 2
    fused = FeatureStacking().fit(z.oof.take(keep), z.y[keep], X=z.X[keep])
    pred = fused.predict(z.test, X=z.X_test)
    np.testing.assert_allclose(pred[:, 2], 0.0)
    np.testing.assert_allclose(pred.sum(axis=1), 1.0)
    state, arrays = fused.get_state()
    loaded = Combiner.from_state(json.loads(json.dumps(state)), arrays)
    np.testing.assert_array_equal(loaded.predict(z.test, X=z.X_test), pred)


@pytest.mark.parametrize("task", ["regression", "binary"])
@pytest.mark.parametrize("meta", ["linear", "lgbm"])
def test_the_features_let_it_correct_what_every_member_misses(task, meta):
    P, y, X = hidden_feature(task, 1500, seed=0)
    P_new, y_new, X_new = hidden_feature(task, 1500, seed=1)
    metric = get_metric("auto", task)
    fused = FeatureStacking(meta=meta).fit(P, y, X=X)
    stacked = Stacking().fit(P, y)
    fused_loss = metric.loss(y_new, fused.predict(P_new, X=X_new))
    stack_loss = metric.loss(y_new, stacked.predict(P_new))
    assert fused_loss < 0.8 * stack_loss, (fused_loss, stack_loss)


# ---------------------------------------------------------------- the LightGBM meta-model


def test_lgbm_state_round_trip_gives_identical_predictions(feature_zoo):
    z = feature_zoo
    fused = FeatureStacking(meta="lgbm").fit(z.oof, z.y, X=z.X)
    assert isinstance(fused.booster_, str) and fused.n_rounds_ >= 1
    state, arrays = fused.get_state()
    text = json.dumps(state, allow_nan=False)
    loaded = Combiner.from_state(json.loads(text), arrays)
    pred = fused.predict(z.test, X=z.X_test)
    np.testing.assert_array_equal(loaded.predict(z.test, X=z.X_test), pred)
    # the prediction is LightGBM's raw score added to the members' mean, then the link
    design = _design(z.test, z.X_test, fit_feature_encoding(z.X))
    raw = lightgbm.Booster(model_str=fused.booster_).predict(design, raw_score=True)
    mean = z.test.values.mean(axis=1)
    if z.task == "regression":
        expected = (raw + mean[:, 0])[:, None]
    elif z.task == "binary":
        p = expit(raw + logit(np.clip(mean[:, 1], 1e-6, 1 - 1e-6)))
        expected = np.column_stack([1 - p, p])
    else:
        expected = softmax(raw + np.log(np.clip(mean, 1e-6, 1 - 1e-6)), axis=1)
        np.testing.assert_allclose(pred.sum(axis=1), 1.0)
    np.testing.assert_allclose(pred, expected, rtol=1e-10, atol=1e-12)


def test_lgbm_boosts_from_a_constant_when_asked(feature_zoo):
    z = feature_zoo
    fused = FeatureStacking(meta="lgbm", start="constant").fit(z.oof, z.y, X=z.X)
    design = _design(z.test, z.X_test, fit_feature_encoding(z.X))
    booster = lightgbm.Booster(model_str=fused.booster_)
    pred = fused.predict(z.test, X=z.X_test)
    if z.task == "regression":
        np.testing.assert_allclose(pred[:, 0], booster.predict(design))
    elif z.task == "binary":
        np.testing.assert_allclose(pred[:, 1], booster.predict(design))
    else:
        np.testing.assert_allclose(pred, booster.predict(design))


def test_lgbm_can_start_from_the_static_weights(feature_zoo):
    z = feature_zoo
    fused = FeatureStacking(meta="lgbm", start="weighted").fit(z.oof, z.y, X=z.X)
    weights = Weighted().fit(z.oof, z.y).weights_
    np.testing.assert_allclose(fused.start_weights_, weights, atol=1e-12)
    design = _design(z.test, z.X_test, fit_feature_encoding(z.X))
    raw = lightgbm.Booster(model_str=fused.booster_).predict(design, raw_score=True)
    start = np.einsum("nmk,m->nk", z.test.values, weights)
    if z.task == "regression":
        expected = (raw + start[:, 0])[:, None]
    elif z.task == "binary":
        p = expit(raw + logit(np.clip(start[:, 1], 1e-6, 1 - 1e-6)))
        expected = np.column_stack([1 - p, p])
    else:
        expected = softmax(raw + np.log(np.clip(start, 1e-6, 1 - 1e-6)), axis=1)
    np.testing.assert_allclose(fused.predict(z.test, X=z.X_test), expected, rtol=1e-10)


def test_a_broken_booster_string_is_refused(feature_zoo):
    z = feature_zoo
    state, arrays = FeatureStacking(meta="lgbm").fit(z.oof, z.y, X=z.X).get_state()
    state["fitted"]["booster_"] = "tree\nnot a model"
    with pytest.raises(ValueError, match="booster_ must be a LightGBM model string"):
        Combiner.from_state(state, arrays)


def test_lgbm_with_sample_weights_and_a_fixed_number_of_rounds():
    P, y, X = hidden_feature("binary", 400, seed=2)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, size=len(y))
    fused = FeatureStacking(meta="lgbm", validation_fraction=0.0, max_rounds=30)
    fused.fit(P, y, X=X, sample_weight=weights)
    assert fused.n_rounds_ == 30
    assert lightgbm.Booster(model_str=fused.booster_).num_trees() == 30
    unweighted = FeatureStacking(meta="lgbm", validation_fraction=0.0, max_rounds=30)
    assert not np.allclose(fused.predict(P, X=X), unweighted.fit(P, y, X=X).predict(P, X=X))


# ---------------------------------------------------------------- the door


@pytest.mark.parametrize("meta", ["linear", "lgbm"])
def test_features_are_required(meta):
    P, y, X = hidden_feature("binary", 200, seed=3)
    with pytest.raises(ValueError, match="X is required"):
        FeatureStacking(meta=meta).fit(P, y)
    fitted = FeatureStacking(meta=meta).fit(P, y, X=X)
    with pytest.raises(ValueError, match="X is required"):
        fitted.predict(P)


def test_on_a_real_zoo(feature_zoo):
    # classification: the features help (breast cancer .082 against stacking's .119, wine
    # .025 against .085); on diabetes (309 rows) they do not, and cost little (57.0 vs 56.8)
    z = feature_zoo
    metric = get_metric("auto", z.task)
    mean = metric.loss(z.y_test, Mean().fit(z.oof, z.y).predict(z.test))
    stack = metric.loss(z.y_test, Stacking().fit(z.oof, z.y).predict(z.test))
    pred = FeatureStacking().fit(z.oof, z.y, X=z.X).predict(z.test, X=z.X_test)
    fused = metric.loss(z.y_test, pred)
    assert fused < (1.03 * mean if z.task == "regression" else 0.8 * stack)


def test_candidates():
    found = candidates(metric="rmse", random_state=5)
    assert set(found) == {"stack_features", "stack_features_lgbm"}
    assert found["stack_features"].meta == "linear"
    assert found["stack_features_lgbm"].meta == "lgbm"
    assert all(c.random_state == 5 and c.metric == "rmse" for c in found.values())
    assert all(c.uses_features == "required" for c in found.values())


def test_lgbm_round_trip_with_a_table_of_numbers_and_categories():
    P, y, X = hidden_feature("binary", 300, seed=4)
    table = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "side": np.where(X[:, 2] < 0, "l", "r")})
    fused = FeatureStacking(meta="lgbm", max_rounds=20).fit(P, y, X=table)
    state, arrays = fused.get_state()
    loaded = Combiner.from_state(json.loads(json.dumps(state)), arrays)
    np.testing.assert_array_equal(loaded.predict(P, X=table), fused.predict(P, X=table))
    state["fitted"]["n_signals_"] = 3  # the booster reads 2 signals and 4 feature columns
    with pytest.raises(ValueError, match="booster_ must read 7 columns"):
        Combiner.from_state(state, arrays)


def test_lgbm_meta_model_fits_a_handful_of_rows_per_class():
    # 9 rows of 3 classes: a stratified 20% hold-out (2 rows) cannot hold every class, so
    # the early-stopping split is drawn unstratified instead of failing
    rng = np.random.default_rng(0)
    y = np.tile([0, 1, 2], 3)
    p = rng.dirichlet(np.ones(3), size=(9, 2))
    P = Predictions(p, ["a", "b"], "multiclass", classes=np.arange(3))
    X = rng.normal(size=(9, 2))
    fused = FeatureStacking(meta="lgbm").fit(P, y, X=X)
    np.testing.assert_allclose(fused.predict(P, X=X).sum(axis=1), 1.0)
