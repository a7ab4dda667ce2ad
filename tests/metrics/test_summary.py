"""The metric summary that ``evaluate`` prints, against scikit-learn and closed forms."""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    log_loss,
    mean_absolute_error,
    mean_pinball_loss,
    r2_score,
    root_mean_squared_error,
)

from ensemblex import Predictions
from ensemblex.metrics.summary import ENSEMBLE, evaluate_predictions, pinball_loss
from ensemblex.predictions import quantile_outputs
from ensemblex.tasks import encode_labels


def test_classification_rows_match_scikit_learn(multiclass_zoo):
    P, y = multiclass_zoo.test, multiclass_zoo.y_test
    result = evaluate_predictions(P, y)
    assert result["task"] == "multiclass"
    assert set(result["members"]) == {*P.members, ENSEMBLE}
    codes = encode_labels(y, P.classes)
    for j, name in enumerate(P.members):
        row = result["members"][name]
        assert row["accuracy"] == pytest.approx(accuracy_score(codes, P.values[:, j].argmax(1)))
        assert row["log_loss"] == pytest.approx(
            log_loss(codes, P.values[:, j], labels=np.arange(10)), rel=1e-6
        )
    mean = P.values.mean(axis=1)
    assert result["members"][ENSEMBLE]["accuracy"] == pytest.approx(
        accuracy_score(codes, mean.argmax(1))
    )
    labels = P.values.argmax(axis=2)
    brute = np.mean([np.mean(labels[:, i] != labels[:, j]) for i in range(5) for j in range(5)])
    assert result["ensemble"]["mean_pairwise_disagreement"] == pytest.approx(brute * 25 / 20)


def test_gaussian_members_match_closed_forms(regression_zoo):
    P0, y = regression_zoo.test, regression_zoo.y_test.astype(float)
    means = P0.values[:, :, 0]
    variances = np.random.default_rng(0).uniform(1000, 4000, size=means.shape)
    P = Predictions(
        np.stack([means, variances], axis=2), P0.members, "regression", outputs=("mean", "var")
    )
    result = evaluate_predictions(P, y)
    for j, name in enumerate(P.members):
        row = result["members"][name]
        sd = np.sqrt(variances[:, j])
        nll = -stats.norm.logpdf(y, means[:, j], sd).mean()
        z = (y - means[:, j]) / sd
        crps = np.mean(sd * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - np.pi**-0.5))
        assert row["nll"] == pytest.approx(nll, rel=1e-9)
        assert row["crps"] == pytest.approx(crps, rel=1e-6)
        assert row["rmse"] == pytest.approx(root_mean_squared_error(y, means[:, j]))
    mixture = stats.norm.pdf(y[:, None], means, np.sqrt(variances)).mean(axis=1)
    assert result["members"][ENSEMBLE]["nll"] == pytest.approx(-np.log(mixture).mean(), rel=1e-9)
    assert 0 < result["ensemble"]["interval_90"]["coverage"] <= 1
    # the same means without variances give the same point scores
    point = evaluate_predictions(P0, y)
    assert point["members"]["ridge"]["rmse"] == result["members"]["ridge"]["rmse"]


def test_zero_variance_is_named():
    values = np.ones((3, 1, 2))
    values[1, 0, 1] = 0.0
    P = Predictions(values, ["a"], "regression", outputs=("mean", "var"), source="g.csv")
    with pytest.raises(ValueError, match="g.csv: member 'a' has variance 0 at row 1"):
        evaluate_predictions(P, [1.0, 2.0, 3.0])


def test_quantile_members_match_scikit_learn(regression_zoo):
    P0, y = regression_zoo.test, regression_zoo.y_test.astype(float)
    levels = np.array([0.1, 0.5, 0.9])
    residual_sd = np.std(y[:, None] - P0.values[:, :, 0], axis=0)
    values = P0.values[:, :, :1] + stats.norm.ppf(levels) * residual_sd[None, :, None]
    P = Predictions(values, P0.members, "regression", outputs=quantile_outputs(levels))
    result = evaluate_predictions(P, y)
    assert result["ensemble"]["quantile_levels"] == [0.1, 0.5, 0.9]
    assert result["ensemble"]["nominal_interval_coverage"] == pytest.approx(0.8)
    for j, name in enumerate([*P.members, ENSEMBLE]):
        q = values[:, j] if name != ENSEMBLE else values.mean(axis=1)
        row = result["members"][name]
        ref = np.mean([mean_pinball_loss(y, q[:, i], alpha=a) for i, a in enumerate(levels)])
        assert row["pinball"] == pytest.approx(ref, rel=1e-12)
        inside = [q[i, 0] <= y[i] <= q[i, 2] for i in range(len(y))]
        assert row["interval_coverage"] == pytest.approx(np.mean(inside))
        assert row["mae"] == pytest.approx(mean_absolute_error(y, q[:, 1]))
        assert row["r2"] == pytest.approx(r2_score(y, q[:, 1]))


def test_pinball_loss_matches_scikit_learn():
    rng = np.random.default_rng(3)
    y, q = rng.normal(size=50), rng.normal(size=(50, 2))
    levels = np.array([0.25, 0.8])
    ours = pinball_loss(q, y, levels)
    ref = [mean_pinball_loss(y, q[:, i], alpha=a) for i, a in enumerate(levels)]
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


def test_bad_calls():
    P = Predictions(np.zeros((3, 1, 1)), ["a"], "regression")
    with pytest.raises(ValueError, match="P_ood is for classification"):
        evaluate_predictions(P, [1.0, 2.0, 3.0], P_ood=P)
    with pytest.raises(ValueError, match=r"y must have shape \(3,\)"):
        evaluate_predictions(P, [1.0, 2.0])
    with pytest.raises(TypeError, match="P must be Predictions"):
        evaluate_predictions(np.zeros((3, 1, 1)), [1.0, 2.0, 3.0])
