import numpy as np
import pytest
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ensemblex import Mean, Stacking
from ensemblex.metrics import get_metric
from ensemblex.tasks import encode_labels


def _codes(P, y):
    return y if P.classes is None else encode_labels(y, P.classes)


def test_plain_stacking_beats_the_mean_on_test(zoo):
    stack = Stacking().fit(zoo.oof, zoo.y)
    pred = stack.predict(zoo.test)
    assert pred.shape == (zoo.test.n_samples, zoo.test.n_outputs)
    if zoo.oof.task != "regression":
        np.testing.assert_allclose(pred.sum(axis=1), 1.0)
    metric = get_metric("auto", zoo.oof.task)
    y_test = _codes(zoo.test, zoo.y_test)
    mean = Mean().fit(zoo.oof, zoo.y).predict(zoo.test)
    assert metric.loss(y_test, pred) < metric.loss(y_test, mean)


def test_four_stage_pipeline(zoo):
    stack = Stacking.regularized().fit(zoo.oof, zoo.y)
    if zoo.oof.task == "regression":
        assert stack.meta_learners_ == ["ridge", "lasso", "elasticnet"]
        assert stack.blend_weights_.sum() == pytest.approx(1.0)
        inverse = 1 / stack.meta_errors_
        np.testing.assert_allclose(stack.blend_weights_, inverse / inverse.sum())
    else:
        assert stack.meta_learners_ == ["logistic"]
    assert set(stack.kept_members_) | set(stack.dropped_members_) == set(zoo.oof.members)
    assert stack.condition_number_after_ <= stack.condition_number_before_
    pred = stack.predict(zoo.test)
    assert np.all(np.isfinite(pred))


def test_pruning_drops_the_near_duplicate_and_lowers_the_condition_number(binary_zoo):
    stack = Stacking(prune_threshold=0.95).fit(binary_zoo.oof, binary_zoo.y)
    assert len(stack.dropped_members_) >= 1
    ((dropped, kept),) = [(d, k) for d, k in stack.dropped_members_.items() if "logreg" in d]
    assert {dropped, kept} == {"logreg", "logreg_dup"}
    assert stack.condition_number_after_ < stack.condition_number_before_ / 10


def test_meta_feature_and_interaction_columns(regression_zoo):
    plain = Stacking().fit(regression_zoo.oof, regression_zoo.y)
    rich = Stacking(meta_features=True, interactions=3).fit(regression_zoo.oof, regression_zoo.y)
    m = regression_zoo.oof.n_members
    assert plain._features(regression_zoo.oof.values).shape[1] == m
    assert rich._features(regression_zoo.oof.values).shape[1] == m + 7 + 3


def test_unknown_meta_learner(binary_zoo):
    with pytest.raises(ValueError, match="meta_learner for binary"):
        Stacking(meta_learner="ridge").fit(binary_zoo.oof, binary_zoo.y)


def test_class_missing_from_a_fit_gets_zero_probability(multiclass_zoo):
    P, y = multiclass_zoo.oof, multiclass_zoo.y
    keep = y != 9
    stack = Stacking().fit(P.take(keep), y[keep])
    pred = stack.predict(multiclass_zoo.test)
    np.testing.assert_allclose(pred[:, 9], 0.0)
    np.testing.assert_allclose(pred.sum(axis=1), 1.0)


def test_same_seed_same_numbers_another_seed_other_folds(regression_zoo):
    P, y = regression_zoo.oof, regression_zoo.y
    a = Stacking.regularized(random_state=3).fit(P, y)
    b = Stacking.regularized(random_state=3).fit(P, y)
    c = Stacking.regularized(random_state=4).fit(P, y)
    pred = a.predict(regression_zoo.test)
    np.testing.assert_array_equal(pred, b.predict(regression_zoo.test))
    assert not np.array_equal(pred, c.predict(regression_zoo.test))  # lasso/enet inner folds
    # the ridge meta-model (leave-one-out, no seed) is scikit-learn's on the same design
    ridge = RidgeCV(alphas=np.logspace(-4, 4, 17))
    X = a._features(P.values)
    reference = (
        make_pipeline(StandardScaler(), ridge)
        .fit(X, y)
        .predict(a._features(regression_zoo.test.values))
    )
    got = a.meta_models_[0].predict(a._features(regression_zoo.test.values))
    np.testing.assert_allclose(got, reference, rtol=1e-10)


def test_constant_members_and_target_fit_without_error():
    from ensemblex.combiners.stacking import condition_number

    assert condition_number(np.ones((5, 3))) == float("inf")
    P = np.zeros((16, 2, 1))
    stack = Stacking().fit(P, np.zeros(16))
    np.testing.assert_allclose(stack.predict(P), 0.0)
    assert stack.condition_number_before_ == float("inf")


def test_meta_models_predict_as_their_pipelines(zoo):
    # the numpy path of _model_output is the pipelines' own arithmetic
    for stack in (Stacking(), Stacking.regularized()):
        stack.fit(zoo.oof, zoo.y)
        X = stack._features(zoo.test.values)
        for model in stack.meta_models_:
            got = stack._model_output(model, X)
            if zoo.oof.task == "regression":
                expected = model.predict(X)[:, None]
            else:
                expected = np.zeros_like(got)
                expected[:, model.classes_] = model.predict_proba(X)
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


def _range_experts(n: int, seed: int):
    """Two members: one accurate on low targets and noisy on high ones, one the reverse."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(0, 10, n)
    low = y < 5
    a = y + rng.normal(0, 1, n) * np.where(low, 0.2, 3.0)
    b = y + rng.normal(0, 1, n) * np.where(low, 3.0, 0.2)
    return np.stack([a, b], axis=1)[:, :, None], y


def test_spline_basis_trusts_each_member_in_its_own_range():
    P, y = _range_experts(3000, seed=0)
    P_test, y_test = _range_experts(3000, seed=1)
    rmse = {}
    for basis in ("linear", "spline"):
        stack = Stacking(basis=basis).fit(P, y)
        rmse[basis] = np.sqrt(np.mean((stack.predict(P_test)[:, 0] - y_test) ** 2))
    # a weight per member cannot tell the ranges apart (1.34 here); a spline basis can (0.97)
    assert rmse["spline"] < 0.8 * rmse["linear"]


def test_spline_design_is_the_basis_of_each_signal_and_their_mean(regression_zoo):
    stack = Stacking(basis="spline", n_knots=5).fit(regression_zoo.oof, regression_zoo.y)
    m = regression_zoo.oof.n_members
    assert stack.spline_knots_.shape == (5, m + 1)
    # n_knots + degree - 1 cubic B-splines per input, in [0, 1], summing to 1 inside the knots
    X = stack._features(regression_zoo.oof.values)
    assert X.shape[1] == (m + 1) * (5 + 3 - 1)
    assert X.min() >= 0.0 and X.max() <= 1.0
    np.testing.assert_allclose(X.reshape(len(X), m + 1, -1).sum(axis=2), 1.0)
    assert Stacking().fit(regression_zoo.oof, regression_zoo.y).spline_knots_ is None


def test_spline_knots_increase_for_members_with_few_values_and_constant_ones():
    from ensemblex.combiners.stacking import spline_knots

    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    two_values = np.where(y > 0, 1.0, -1.0)  # quantiles repeat
    P = np.stack([y + rng.normal(0, 0.3, 200), two_values, np.full(200, 3.0)], axis=1)[..., None]
    knots = spline_knots(P[:, :, 0], 4)
    assert np.all(np.diff(knots, axis=0) > 0)
    np.testing.assert_allclose(knots[:, 1], np.linspace(-1, 1, 4))  # evenly spaced instead
    stack = Stacking(basis="spline").fit(P, y)
    assert np.all(np.isfinite(stack.predict(P)))


def test_a_state_with_bad_spline_knots_is_refused(regression_zoo):
    from ensemblex.combiners import Combiner

    stack = Stacking(basis="spline").fit(regression_zoo.oof, regression_zoo.y)
    state, arrays = stack.get_state()
    name = state["fitted"]["spline_knots_"]["__array__"]
    for bad in (arrays[name][::-1], arrays[name][:, :2], np.full_like(arrays[name], np.nan)):
        with pytest.raises(ValueError, match="spline_knots_"):
            Combiner.from_state(state, {**arrays, name: bad})
    linear_state, linear_arrays = Stacking().fit(regression_zoo.oof, regression_zoo.y).get_state()
    linear_state["fitted"]["spline_knots_"] = state["fitted"]["spline_knots_"]
    with pytest.raises(ValueError, match="basis='linear'"):
        Combiner.from_state(linear_state, {**linear_arrays, name: arrays[name]})


def test_spline_stacking_predicts_each_row_on_its_own_and_meta_features_stay_scaled(
    regression_zoo,
):
    P, y = regression_zoo.oof, regression_zoo.y
    stack = Stacking(basis="spline", meta_features=True, interactions=2).fit(P, y)
    test = regression_zoo.test.values
    np.testing.assert_allclose(stack.predict(test[:7]), stack.predict(test)[:7], rtol=1e-12)
    # the same model in other units of y: spline columns unscaled, the rest standardised
    scaled = Stacking(basis="spline", meta_features=True, interactions=2).fit(
        P.values * 1e3, y * 1e3
    )
    np.testing.assert_allclose(scaled.predict(test * 1e3) / 1e3, stack.predict(test), rtol=1e-6)
    scaler = stack.meta_models_[0].named_steps["scale"]
    n_spline = stack._spline_basis().n_features_out_
    assert np.all(scaler.mean_[:n_spline] == 0) and np.all(scaler.scale_[:n_spline] == 1)
    assert np.all(scaler.scale_[n_spline:] != 1)


def test_a_state_saved_before_the_spline_basis_still_loads(regression_zoo):
    from ensemblex.combiners import Combiner

    stack = Stacking().fit(regression_zoo.oof, regression_zoo.y)
    state, arrays = stack.get_state()
    for param in ("basis", "n_knots"):
        del state["params"][param]
    del state["fitted"]["spline_knots_"]
    loaded = Combiner.from_state(state, arrays)
    assert loaded.basis == "linear" and loaded.spline_knots_ is None
    np.testing.assert_array_equal(
        loaded.predict(regression_zoo.test), stack.predict(regression_zoo.test)
    )


def test_a_state_with_bad_params_or_scaler_is_refused(regression_zoo):
    from ensemblex.combiners import Combiner

    stack = Stacking(basis="spline").fit(regression_zoo.oof, regression_zoo.y)
    state, arrays = stack.get_state()
    for bad in (None, "x", 1):
        broken = {**state, "params": {**state["params"], "n_knots": bad}}
        with pytest.raises(ValueError, match="n_knots"):
            Combiner.from_state(broken, arrays)
    meta = state["fitted"]["meta_models_"][0]
    broken_meta = {**meta, "scale": {**meta["scale"], "scale_": None}}
    broken = {**state, "fitted": {**state["fitted"], "meta_models_": [broken_meta]}}
    with pytest.raises(ValueError, match="scaler"):
        Combiner.from_state(broken, arrays)
