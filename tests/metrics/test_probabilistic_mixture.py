"""Gaussian-mixture scores against references: numerical integration, scipy, scoringrules."""

import numpy as np
import pytest
import scoringrules as sr
from scipy import integrate, stats

from ensemblex.metrics import probabilistic as prob
from ensemblex.metrics.summary import ENSEMBLE, evaluate_predictions
from ensemblex.predictions import Predictions


@pytest.fixture
def mixture():
    rng = np.random.default_rng(3)
    n, m = 40, 3
    means = rng.normal(size=(n, m))
    variances = rng.uniform(0.2, 2.0, size=(n, m))
    weights = np.array([0.5, 0.3, 0.2])
    y = rng.normal(size=n)
    return means, variances, weights, y


def _cdf(x, mu, var, w):
    return stats.norm.cdf(x, mu, np.sqrt(var)) @ w


def test_crps_matches_numerical_integration(mixture):
    means, variances, weights, y = mixture
    by_integral = []
    for i in range(6):  # CRPS = integral of (F(x) - 1{x >= y})^2 dx, brute force per row

        def below(x, i=i):
            return _cdf(x, means[i], variances[i], weights) ** 2

        def above(x, i=i):
            return (1 - _cdf(x, means[i], variances[i], weights)) ** 2

        lo = integrate.quad(below, -np.inf, y[i])[0]
        hi = integrate.quad(above, y[i], np.inf)[0]
        by_integral.append(lo + hi)
    closed = [prob.mixture_crps(means[[i]], variances[[i]], y[[i]], weights) for i in range(6)]
    np.testing.assert_allclose(closed, by_integral, rtol=1e-6)


def test_nll_matches_scipy(mixture):
    means, variances, weights, y = mixture
    density = stats.norm.pdf(y[:, None], means, np.sqrt(variances)) @ weights
    assert prob.mixture_nll(means, variances, y, weights) == pytest.approx(
        -np.mean(np.log(density)), rel=1e-12
    )


def test_spread_skill_and_pit_against_brute_force(mixture):
    means, variances, weights, y = mixture
    mean = means @ weights
    var = ((variances + means**2) @ weights) - mean**2
    expected = np.sqrt(var.mean()) / np.sqrt(np.mean((mean - y) ** 2))
    assert prob.mixture_spread_skill_ratio(means, variances, y, weights) == pytest.approx(expected)
    pit = prob.mixture_pit(means, variances, y, weights)
    np.testing.assert_allclose(
        pit, [_cdf(y[i], means[i], variances[i], weights) for i in range(40)]
    )
    hist = prob.pit_histogram(means, variances, y, 4, weights)
    np.testing.assert_array_equal(hist, np.histogram(pit, bins=4, range=(0, 1))[0])
    with pytest.raises(ValueError, match="bins must be >= 1, however: bins=0"):
        prob.pit_histogram(means, variances, y, 0)


def test_calibrated_mixture_has_flat_pit_and_unit_spread_skill():
    rng = np.random.default_rng(0)
    n = 20000
    means = np.stack([rng.normal(size=n), rng.normal(size=n)], axis=1)
    variances = np.full((n, 2), 0.5)
    pick = rng.integers(0, 2, n)  # y drawn from the mixture itself
    y = means[np.arange(n), pick] + rng.normal(size=n) * np.sqrt(0.5)
    hist = prob.pit_histogram(means, variances, y, 10)
    assert stats.chisquare(hist).pvalue > 1e-3
    assert prob.mixture_spread_skill_ratio(means, variances, y) == pytest.approx(1.0, abs=0.02)
    # under-dispersed members: a U-shaped PIT histogram, spread below skill
    narrow = prob.pit_histogram(means, variances / 16, y, 10)
    assert narrow[0] > 2 * narrow[5] and narrow[-1] > 2 * narrow[5]


def test_evaluate_reports_the_mixture_versions_for_gaussian_members(mixture):
    means, variances, _, y = mixture
    P = Predictions(
        np.stack([means, variances], axis=2), ["a", "b", "c"], "regression",
        outputs=("mean", "var"),
    )  # fmt: skip
    result = evaluate_predictions(P, y)
    summary = result["ensemble"]
    assert summary["spread_skill_ratio"] == pytest.approx(
        prob.mixture_spread_skill_ratio(means, variances, y)
    )
    assert summary["pit_histogram"] == prob.pit_histogram(means, variances, y).tolist()
    assert "rank_histogram" not in summary
    assert result["members"][ENSEMBLE]["crps"] == pytest.approx(
        np.mean(sr.crps_mixnorm(y, means, np.sqrt(variances), np.full(means.shape, 1 / 3)))
    )
    assert result["members"]["b"]["spread_skill_ratio"] == pytest.approx(
        np.sqrt(variances[:, 1].mean()) / np.sqrt(np.mean((means[:, 1] - y) ** 2))
    )
