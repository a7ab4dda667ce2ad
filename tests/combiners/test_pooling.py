"""Pooling: the optimum of its likelihood (checked by its optimality conditions and against
scipy's bounded least squares) and what the pool means."""

import numpy as np
import pytest
from scipy.optimize import lsq_linear
from scipy.special import softmax

from ensemblex import Mean, Pooling, Predictions, Stacking
from ensemblex.combiners.pooling import log_probabilities
from ensemblex.tasks import encode_labels


def _objective_and_gradient(values, codes, weights, bias, alpha):
    """The penalised mean log-loss of the pool and its gradient, written out in float64."""
    n, _, k = values.shape
    logp = log_probabilities(values)
    z = np.einsum("nmk,m->nk", logp, weights) + bias
    s = softmax(z, axis=1)
    onehot = np.eye(k)[codes]
    loss = -np.mean(np.log(s[np.arange(n), codes])) + alpha * (weights @ weights + bias @ bias)
    r = (s - onehot) / n
    grad_w = np.einsum("nmk,nk->m", logp, r) + 2 * alpha * weights
    grad_b = r.sum(axis=0) + 2 * alpha * bias
    return loss, grad_w, grad_b


@pytest.mark.parametrize("name", ["binary_zoo", "multiclass_zoo"])
def test_log_linear_pool_meets_its_optimality_conditions(name, request):
    zoo = request.getfixturevalue(name)
    pool = Pooling().fit(zoo.oof, zoo.y)
    codes = encode_labels(zoo.y, zoo.oof.classes)
    loss, grad_w, grad_b = _objective_and_gradient(
        zoo.oof.values, codes, pool.weights_, pool.bias_, pool.alpha
    )
    assert pool.converged_
    # Karush-Kuhn-Tucker for weights >= 0: zero gradient where a weight is positive, a
    # gradient pushing toward the bound where it is zero; free biases have zero gradient.
    active = pool.weights_ > 0
    assert active.any()
    np.testing.assert_allclose(grad_w[active], 0, atol=2e-4)
    assert np.all(grad_w[~active] > -2e-4)
    np.testing.assert_allclose(grad_b, 0, atol=2e-4)
    # and nothing nearby is better: a few random feasible steps all cost more
    rng = np.random.default_rng(0)
    for _ in range(20):
        w = np.maximum(pool.weights_ + rng.normal(scale=0.02, size=pool.weights_.shape), 0)
        b = pool.bias_ + rng.normal(scale=0.02, size=pool.bias_.shape)
        worse, _, _ = _objective_and_gradient(zoo.oof.values, codes, w, b, pool.alpha)
        assert worse >= loss - 1e-7


def test_log_linear_pool_predicts_the_normalised_weighted_geometric_mean(multiclass_zoo):
    pool = Pooling().fit(multiclass_zoo.oof, multiclass_zoo.y)
    P = multiclass_zoo.test.values
    p = np.maximum(P, 1e-4)
    p = p / p.sum(axis=2, keepdims=True)
    unnormalised = np.prod(p ** pool.weights_[None, :, None], axis=1) * np.exp(pool.bias_)
    expected = unnormalised / unnormalised.sum(axis=1, keepdims=True)
    # float32 logarithms: equal to single precision
    np.testing.assert_allclose(pool.predict(multiclass_zoo.test), expected, rtol=2e-5, atol=1e-9)


def test_binary_pool_is_non_negative_logistic_regression_on_member_logits(binary_zoo):
    pool = Pooling().fit(binary_zoo.oof, binary_zoo.y)
    logp = log_probabilities(binary_zoo.test.values)
    logits = logp[:, :, 1] - logp[:, :, 0]
    expected = 1 / (1 + np.exp(-(logits @ pool.weights_ + pool.bias_[1] - pool.bias_[0])))
    np.testing.assert_allclose(pool.predict(binary_zoo.test)[:, 1], expected, rtol=2e-5, atol=1e-9)


def test_pool_beats_the_mean_on_the_multiclass_zoo(multiclass_zoo):
    pool = Pooling().fit(multiclass_zoo.oof, multiclass_zoo.y)
    mean = Mean().fit(multiclass_zoo.oof, multiclass_zoo.y)
    assert not pool.metric_.greater_is_better  # log-loss
    assert pool.score(multiclass_zoo.test, multiclass_zoo.y_test) < 0.5 * mean.score(
        multiclass_zoo.test, multiclass_zoo.y_test
    )


def test_regression_pool_is_bounded_least_squares(regression_zoo):
    pool = Pooling(alpha=0.0).fit(regression_zoo.oof, regression_zoo.y)
    X = regression_zoo.oof.values[:, :, 0]
    design = np.column_stack([X, np.ones(len(X))])
    m = X.shape[1]
    ref = lsq_linear(
        design,
        regression_zoo.y.astype(float),
        bounds=([0] * m + [-np.inf], [np.inf] * (m + 1)),
        tol=1e-12,
    )
    ours = np.concatenate([pool.weights_, pool.bias_])
    np.testing.assert_allclose(design @ ours, design @ ref.x, rtol=1e-6)
    assert np.all(pool.weights_ >= 0)


def test_regression_pool_with_sample_weights_matches_repeated_rows(regression_zoo):
    P, y = regression_zoo.oof, regression_zoo.y
    counts = np.arange(len(y)) % 3 + 1
    weighted = Pooling(alpha=0.0).fit(P, y, sample_weight=counts)
    repeated = Pooling(alpha=0.0).fit(
        P.take(np.repeat(np.arange(len(y)), counts)), np.repeat(y, counts)
    )
    np.testing.assert_allclose(
        weighted.predict(regression_zoo.test), repeated.predict(regression_zoo.test), rtol=1e-8
    )


def test_warm_start_reaches_the_same_optimum(multiclass_zoo):
    P, y = multiclass_zoo.oof, multiclass_zoo.y
    half = np.arange(0, P.n_samples, 2)
    codes = encode_labels(y[half], P.classes)
    full = Pooling().fit(P, y)
    cold = Pooling().fit(P.take(half), y[half])
    warm = Pooling().warm_start_from(full).fit(P.take(half), y[half])
    losses = [
        _objective_and_gradient(P.values[half], codes, c.weights_, c.bias_, c.alpha)[0]
        for c in (cold, warm)
    ]
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)


def test_predict_folds_is_the_mean_for_weighted_averages_but_not_for_a_pool(multiclass_zoo):
    P, y = multiclass_zoo.oof, multiclass_zoo.y
    rng = np.random.default_rng(0)
    # two "fold models": the test predictions, and a noisier copy, renormalised
    noisy = np.clip(
        multiclass_zoo.test.values + rng.uniform(0, 0.2, multiclass_zoo.test.shape), 0, 1
    )
    noisy /= noisy.sum(axis=2, keepdims=True)
    folds = [multiclass_zoo.test, Predictions(noisy, P.members, P.task, classes=P.classes)]
    averaged = Predictions((folds[0].values + noisy) / 2, P.members, P.task, classes=P.classes)
    mean = Mean().fit(P, y)
    np.testing.assert_allclose(mean.predict_folds(folds), mean.predict(averaged), rtol=1e-12)
    for nonlinear in (Pooling(), Stacking()):
        nonlinear.fit(P, y)
        by_fold = nonlinear.predict_folds(folds)
        expected = (nonlinear.predict(folds[0]) + nonlinear.predict(folds[1])) / 2
        np.testing.assert_allclose(by_fold, expected, rtol=1e-12)
        assert not np.allclose(by_fold, nonlinear.predict(averaged), atol=1e-6)
    with pytest.raises(ValueError, match="at least one fold"):
        mean.predict_folds([])


def test_bad_state_is_refused(binary_zoo):
    pool = Pooling().fit(binary_zoo.oof, binary_zoo.y)
    state, arrays = pool.get_state()
    bad = dict(arrays)
    bad["weights_"] = -bad["weights_"]
    with pytest.raises(ValueError, match="non-negative"):
        Pooling.from_state(state, bad)
    short = dict(arrays)
    short["bias_"] = short["bias_"][:1]
    with pytest.raises(ValueError, match="bias_"):
        Pooling.from_state(state, short)


def test_log_linear_pool_with_sample_weights_matches_repeated_rows(binary_zoo):
    P, y = binary_zoo.oof, binary_zoo.y
    counts = np.arange(len(y)) % 3 + 1
    weighted = Pooling().fit(P, y, sample_weight=counts)
    repeated = Pooling().fit(P.take(np.repeat(np.arange(len(y)), counts)), np.repeat(y, counts))
    # equal to the optimiser's tolerance, where ignoring the weights is not
    np.testing.assert_allclose(
        weighted.predict(binary_zoo.test), repeated.predict(binary_zoo.test), atol=1e-3
    )
    unweighted = Pooling().fit(P, y).predict(binary_zoo.test)
    assert np.abs(unweighted - repeated.predict(binary_zoo.test)).max() > 1e-2


def test_a_warm_start_using_one_member_still_reaches_the_optimum_of_all(multiclass_zoo):
    P, y = multiclass_zoo.oof, multiclass_zoo.y
    codes = encode_labels(y, P.classes)
    cold = Pooling().fit(P, y)
    narrow = Pooling().fit(P, y)  # a start that uses the first member only
    narrow.weights_ = np.eye(P.n_members)[0]
    narrow.bias_ = np.zeros(P.n_outputs)
    warm = Pooling().warm_start_from(narrow).fit(P, y)
    assert (warm.weights_ > 0).sum() > 1  # the working set grew
    loss, grad_w, _ = _objective_and_gradient(
        P.values, codes, warm.weights_, warm.bias_, warm.alpha
    )
    assert np.all(grad_w[warm.weights_ == 0] > -2e-4)  # no member left out should enter
    cold_loss = _objective_and_gradient(P.values, codes, cold.weights_, cold.bias_, cold.alpha)[0]
    assert loss == pytest.approx(cold_loss, rel=1e-4)
