"""MixtureWeights: closed-form objectives and gradients, a recovered dispersion, state."""

import json

import numpy as np
import pytest
import scoringrules as sr
from scipy import stats
from scipy.optimize import check_grad

from ensemblex.combiners import Combiner, MixtureWeights, available_candidates
from ensemblex.combiners.mixture import _crps_objective, _nll_objective, fit_mixture
from ensemblex.combiners.persistence import combiner_state, load_combiner
from ensemblex.metrics.probabilistic import mixture_crps, mixture_nll
from ensemblex.predictions import Predictions


def gaussian_members(n=3000, seed=0, member_sd=(0.5, 0.5, 0.5), noise=(0.2, 0.2, 1.5)):
    """y ~ N(f(x), 1); member j predicts f(x) + its own noise with variance member_sd[j]^2."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=n) * 2
    y = f + rng.normal(size=n)
    means = f[:, None] + rng.normal(size=(n, 3)) * np.asarray(noise)
    variances = np.broadcast_to(np.asarray(member_sd) ** 2, (n, 3)).copy()
    values = np.stack([means, variances], axis=2)
    return Predictions(values, ["a", "b", "c"], "regression", outputs=("mean", "var")), y


@pytest.mark.parametrize("make", [_crps_objective, _nll_objective])
def test_gradients_match_finite_differences(make):
    rng = np.random.default_rng(1)
    n, m = 150, 4
    mu, sd, t = rng.normal(size=(n, m)), rng.uniform(0.3, 2, (n, m)), rng.normal(size=n)
    objective = make(mu, sd, t, rng.dirichlet(np.ones(n)), True)

    def value(theta):
        return objective(theta[:m], theta[m], theta[m + 1])[0]

    def grad(theta):
        _, g_w, g_s, g_b = objective(theta[:m], theta[m], theta[m + 1])
        return np.concatenate([g_w, [g_s], [g_b]])

    theta = np.concatenate([rng.dirichlet(np.ones(m)), [0.3], [-0.2]])
    assert check_grad(value, grad, theta) < 1e-6 * max(1.0, np.abs(grad(theta)).max())


def test_objectives_equal_scoringrules_and_scipy():
    P, y = gaussian_members(n=500)
    means, variances = P.values[:, :, 0], P.values[:, :, 1]
    w = np.array([0.2, 0.5, 0.3])
    found = fit_mixture(means, variances, y, "crps")
    crps = mixture_crps(means, variances * found["scale"] ** 2, y, found["weights"])
    assert found["score"] == pytest.approx(crps, rel=1e-9)
    rows = np.full(len(y), 1 / len(y))
    value = _crps_objective(means, np.sqrt(variances), y, rows, False)(w, 0.0, 0.0)[0]
    reference = sr.crps_mixnorm(y, means, np.sqrt(variances), np.broadcast_to(w, means.shape))
    assert value == pytest.approx(np.mean(reference), rel=1e-12)
    value = _nll_objective(means, np.sqrt(variances), y, rows, False)(w, 0.0, 0.0)[0]
    density = stats.norm.pdf(y[:, None], means, np.sqrt(variances)) @ w
    assert value == pytest.approx(-np.mean(np.log(density)), rel=1e-12)


@pytest.mark.parametrize("score", ["crps", "nll"])
def test_recovers_dispersion_and_beats_uniform_weights(score):
    # a and b are accurate (error sd 0.2) but claim sd 0.5 where y's noise is 1: a scale of
    # about sqrt(1 + 0.2^2) / 0.5 = 2.04 fixes it; c is poor and should lose its weight
    P, y = gaussian_members()
    combiner = MixtureWeights(score=score).fit(P, y)
    assert combiner.scale_ == pytest.approx(np.sqrt(1.04) / 0.5, rel=0.05)
    assert combiner.weights_[2] < 0.05
    assert combiner.converged_
    means, variances = P.values[:, :, 0], P.values[:, :, 1]
    loss = mixture_crps if score == "crps" else mixture_nll
    fitted = loss(means, variances * combiner.scale_**2, y, combiner.weights_)
    assert fitted == pytest.approx(combiner.score_, rel=1e-9)
    assert fitted < loss(means, variances, y)  # uniform weights, scale 1
    assert fitted < loss(means, variances * combiner.scale_**2, y)  # uniform weights
    # no perturbation of the optimum does better
    rng = np.random.default_rng(0)
    for _ in range(5):
        w = np.abs(combiner.weights_ + rng.normal(scale=0.05, size=3))
        s = combiner.scale_ * np.exp(rng.normal(scale=0.05))
        assert loss(means, variances * s**2, y, w / w.sum()) >= fitted - 1e-9


def test_bias_is_recovered_and_the_output_is_the_mixture_moments():
    P, y = gaussian_members(member_sd=(1.0, 1.0, 1.0), noise=(0.1, 0.1, 0.1))
    combiner = MixtureWeights(fit_bias=True).fit(P, y + 3.0)
    assert combiner.bias_ == pytest.approx(3.0, abs=0.1)
    out = combiner.predict(P)
    m, v, w = combiner.components(P)
    mean = m @ w
    np.testing.assert_allclose(out[:, 0], mean)
    np.testing.assert_allclose(out[:, 1], (v + m**2) @ w - mean**2, rtol=1e-9, atol=1e-12)


def test_sample_weight_and_subsampling_are_reproducible():
    P, y = gaussian_members(n=1200)
    keep = np.arange(1200) < 700
    weighted = MixtureWeights().fit(P, y, sample_weight=keep.astype(float))
    subset = MixtureWeights().fit(P.take(keep), y[keep])
    np.testing.assert_allclose(weighted.weights_, subset.weights_, atol=1e-5)
    assert weighted.scale_ == pytest.approx(subset.scale_, rel=1e-5)
    first = MixtureWeights(max_rows=500, random_state=3).fit(P, y)
    again = MixtureWeights(max_rows=500, random_state=3).fit(P, y)
    assert first.scale_ == again.scale_ and np.array_equal(first.weights_, again.weights_)


def test_state_round_trip(tmp_path):
    P, y = gaussian_members(n=400)
    combiner = MixtureWeights(score="nll", fit_bias=True).fit(P, y)
    state, arrays = combiner.get_state()
    rebuilt = Combiner.from_state(json.loads(json.dumps(state)), arrays)
    np.testing.assert_array_equal(rebuilt.predict(P), combiner.predict(P))
    saved, _ = combiner_state(combiner, tmp_path)
    loaded = load_combiner(json.loads(json.dumps(saved)), tmp_path)
    assert isinstance(loaded, MixtureWeights) and loaded.score == "nll"
    np.testing.assert_array_equal(loaded.predict(P), combiner.predict(P))
    state["fitted"]["scale_"] = -1.0
    with pytest.raises(ValueError, match="scale_ must be positive"):
        Combiner.from_state(state, arrays)


def test_refuses_point_predictions_and_bad_parameters():
    P, y = gaussian_members(n=100)
    point = Predictions(P.values[:, :, :1], P.members, "regression")
    with pytest.raises(ValueError, match=r"needs Predictions of members that predict a Gaussian"):
        MixtureWeights().fit(point, y)
    with pytest.raises(ValueError, match="needs Predictions"):
        MixtureWeights().fit(P.values, y)
    with pytest.raises(ValueError, match="'score' parameter"):
        MixtureWeights(score="mse").fit(P, y)
    with pytest.raises(ValueError, match="unknown member"):
        MixtureWeights().fit(P, y).components(P.select(["a", "b"]))


def test_named_candidates():
    pool = available_candidates()
    assert pool["mixture_crps"].score == "crps" and pool["mixture_nll"].score == "nll"
