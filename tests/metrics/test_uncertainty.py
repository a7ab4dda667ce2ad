"""Calibration, selective prediction, OOD, diversity and probabilistic scores against
reference implementations (torchmetrics, scikit-learn, scipy, scoringrules) on real data."""

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from sklearn.metrics import roc_auc_score
from torchmetrics.functional.classification import multiclass_calibration_error

from ensemblex.metrics.calibration import (
    TemperatureScaling,
    expected_calibration_error,
    reliability_bins,
)
from ensemblex.metrics.diversity import (
    ambiguity_decomposition,
    error_correlation,
    pairwise_disagreement,
)
from ensemblex.metrics.ood import (
    detection_metrics,
    energy_score,
    entropy_score,
    max_probability_score,
    mutual_information_score,
)
from ensemblex.metrics.probabilistic import (
    interval_coverage,
    mixture_crps,
    mixture_moments,
    mixture_nll,
    mixture_quantile,
    rank_histogram,
    spread_skill_ratio,
)
from ensemblex.metrics.selective import (
    aurc,
    coverage_at_risk,
    risk_at_coverage,
    risk_coverage_curve,
)
from ensemblex.tasks import encode_labels


@pytest.fixture
def classified(multiclass_zoo):
    P = multiclass_zoo.test
    return P.values, encode_labels(multiclass_zoo.y_test, P.classes)


@pytest.mark.parametrize("n_bins", [10, 15])
def test_ece_matches_torchmetrics(classified, n_bins):
    values, y = classified
    columns = [values[:, j] for j in range(values.shape[1])] + [values.mean(axis=1)]
    edges = np.linspace(0, 1, n_bins + 1)
    # torchmetrics bins in float32, so a confidence within float32 rounding of a bin edge may
    # land in the neighbouring bin there; compare on predictions without such ties.
    inner = edges[1:-1]
    clear = [p for p in columns if np.abs(p.max(axis=1)[:, None] - inner).min() > 1e-6]
    assert len(clear) >= 3
    for proba in clear:
        ours = expected_calibration_error(proba, y, n_bins=n_bins)
        ref = multiclass_calibration_error(
            torch.tensor(proba), torch.tensor(y), num_classes=values.shape[2], n_bins=n_bins
        )
        assert ours == pytest.approx(float(ref), abs=1e-6)


def test_adaptive_ece_uses_equal_count_bins(classified):
    values, y = classified
    bins = reliability_bins(values.mean(axis=1), y, n_bins=10, strategy="quantile")
    assert bins.count.max() - bins.count.min() <= 0.1 * len(y)
    ece = expected_calibration_error(values.mean(axis=1), y, strategy="quantile")
    assert 0 <= ece <= 1


def test_temperature_scaling_lowers_log_loss_on_held_out_rows(multiclass_zoo):
    from sklearn.metrics import log_loss

    P, test = multiclass_zoo.oof, multiclass_zoo.test
    y = encode_labels(multiclass_zoo.y, P.classes)
    y_test = encode_labels(multiclass_zoo.y_test, P.classes)
    j = P.members.index("forest")
    scaler = TemperatureScaling().fit(P.values[:, j], y)
    assert scaler.temperature_ != pytest.approx(1.0, abs=1e-3)
    scaled = scaler.transform(test.values[:, j])
    np.testing.assert_allclose(scaled.sum(axis=1), 1.0)
    clipped = np.clip(test.values[:, j], 1e-15, 1)
    assert log_loss(y_test, scaled, labels=range(10)) < log_loss(y_test, clipped, labels=range(10))


def test_selective_prediction(classified):
    values, y = classified
    proba = values.mean(axis=1)
    curve = risk_coverage_curve(proba, y)
    errors = proba.argmax(axis=1) != y
    order = np.argsort(-proba.max(axis=1), kind="stable")
    brute = [errors[order[:k]].mean() for k in range(1, len(y) + 1)]
    np.testing.assert_allclose(curve.risk, brute, atol=1e-12)
    assert aurc(proba, y) == pytest.approx(np.mean(brute), abs=1e-12)
    assert risk_at_coverage(proba, y, 1.0) == pytest.approx(errors.mean())
    cov = coverage_at_risk(proba, y, 0.05)
    k = round(cov * len(y))
    assert brute[k - 1] <= 0.05 and (k == len(y) or min(brute[k:]) > 0.05)
    # a perfect confidence ranks all errors last
    assert aurc(proba, y, confidence=-errors.astype(float)) <= aurc(proba, y)


def test_ood_scores_and_detection(classified):
    values, _ = classified
    rng = np.random.default_rng(0)
    noise = rng.dirichlet(np.ones(10), size=(200, values.shape[1]))  # flat, random members
    for score in (max_probability_score, entropy_score, mutual_information_score):
        s_id, s_ood = score(values), score(noise)
        det = detection_metrics(s_id, s_ood)
        labels = np.r_[np.zeros(len(s_id)), np.ones(len(s_ood))]
        assert det.auroc == pytest.approx(roc_auc_score(labels, np.r_[s_id, s_ood]), abs=1e-12)
        assert 0 <= det.fpr_at_95_tpr <= 1
        if score is not mutual_information_score:  # digits' own members disagree a lot
            assert det.auroc > 0.95
    mi = mutual_information_score(values)
    assert np.all(mi >= -1e-12)
    logits = np.log(np.clip(values, 1e-12, 1))
    np.testing.assert_allclose(
        energy_score(logits), -np.log(np.exp(logits.mean(axis=1)).sum(axis=1)), rtol=1e-10
    )


def test_fpr_at_95_tpr_by_hand():
    det = detection_metrics(np.arange(100.0), np.arange(50.0, 150.0))
    # 95% of OOD (scores >= 55) lie above the threshold 55; ID scores >= 55: 45 of 100
    assert det.fpr_at_95_tpr == pytest.approx(0.45)


def test_diversity_and_ambiguity(classified, regression_zoo):
    values, y = classified
    D = pairwise_disagreement(values)
    labels = values.argmax(axis=2)
    assert D[0, 1] == pytest.approx(np.mean(labels[:, 0] != labels[:, 1]))
    np.testing.assert_allclose(np.diag(D), 0.0)
    ce = ambiguity_decomposition(values, y, "cross_entropy")
    assert ce.ensemble_loss == pytest.approx(ce.average_member_loss - ce.diversity)
    assert ce.diversity >= 0
    R, yr = regression_zoo.test.values, regression_zoo.y_test
    se = ambiguity_decomposition(R, yr)
    assert se.ensemble_loss == pytest.approx(se.average_member_loss - se.diversity, rel=1e-10)
    C = error_correlation(R, yr)
    residuals = R[:, :, 0] - yr[:, None]
    assert C[0, 2] == pytest.approx(np.corrcoef(residuals[:, 0], residuals[:, 2])[0, 1])


def _mixture(seed=0, n=60, m=4):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(n, m))
    variances = rng.uniform(0.2, 2.0, size=(n, m))
    w = rng.dirichlet(np.ones(m))
    y = rng.normal(size=n)
    return means, variances, w, y


def test_mixture_scores_against_scipy_and_integration():
    means, variances, w, y = _mixture()
    sd = np.sqrt(variances)
    pdf = (w * stats.norm.pdf(y[:, None], means, sd)).sum(axis=1)
    assert mixture_nll(means, variances, y, w) == pytest.approx(-np.log(pdf).mean(), rel=1e-10)
    mean, var = mixture_moments(means, variances, w)
    i = 7
    grid = np.linspace(-20, 20, 200001)
    density = (w * stats.norm.pdf(grid[:, None], means[i], sd[i])).sum(axis=1)
    assert mean[i] == pytest.approx(integrate.trapezoid(grid * density, grid), abs=1e-6)
    assert var[i] == pytest.approx(
        integrate.trapezoid((grid - mean[i]) ** 2 * density, grid), abs=1e-6
    )
    cdf = (w * stats.norm.cdf(grid[:, None], means[i], sd[i])).sum(axis=1)
    crps_i = integrate.trapezoid((cdf - (grid >= y[i])) ** 2, grid)
    crps = mixture_crps(means[i : i + 1], variances[i : i + 1], y[i : i + 1], w)
    assert crps == pytest.approx(crps_i, abs=1e-5)
    q = mixture_quantile(means, variances, 0.9, w)
    at_q = (w * stats.norm.cdf(q[:, None], means, sd)).sum(axis=1)
    np.testing.assert_allclose(at_q, 0.9, atol=1e-9)


def test_interval_spread_skill_and_rank_histogram():
    rng = np.random.default_rng(3)
    n, m = 4000, 9
    centre = rng.normal(size=n)
    y = centre + rng.normal(size=n)
    means = centre[:, None] + rng.normal(size=(n, m))  # members drawn like the truth
    assert spread_skill_ratio(means, y) == pytest.approx(1.0, abs=0.05)
    hist = rank_histogram(means, y)
    assert hist.sum() == n and len(hist) == m + 1
    assert hist.max() / hist.min() < 1.5  # flat for a reliable ensemble
    variances = np.ones((n, m))
    cov = interval_coverage(centre[:, None].repeat(2, 1), variances[:, :2], y, level=0.9)
    assert cov.coverage == pytest.approx(0.9, abs=0.02)
    assert cov.mean_width == pytest.approx(2 * 1.6449, abs=1e-3)
