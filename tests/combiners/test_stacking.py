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
