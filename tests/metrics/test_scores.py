import numpy as np
import pytest

from ensemblex.metrics import METRICS, get_metric
from ensemblex.tasks import encode_labels


def _codes(zoo):
    P = zoo.oof
    return P, (encode_labels(zoo.y, P.classes) if P.classes is not None else zoo.y)


@pytest.mark.parametrize("weighted", [False, True])
def test_batch_scores_agree_with_scikit_learn(zoo, weighted):
    P, y = _codes(zoo)
    rng = np.random.default_rng(0)
    sw = rng.uniform(0.2, 3.0, len(y)) if weighted else None
    kind = "regression" if P.task == "regression" else "classification"
    metrics = [m for m in METRICS.values() if m.task == kind]
    assert metrics
    candidates = P.values.transpose(1, 0, 2)
    for metric in metrics:
        batch = metric.score_batch(y, candidates, sw)
        single = [metric.score(y, candidates[j], sw) for j in range(P.n_members)]
        np.testing.assert_allclose(batch, single, rtol=1e-10, atol=1e-12, err_msg=metric.name)


def test_roc_auc_batch_handles_ties():
    y = np.array([0, 1, 1, 0, 1, 0, 1, 1])
    p = np.array([0.2, 0.2, 0.7, 0.7, 0.9, 0.1, 0.5, 0.5])
    C = np.stack([1 - p, p], axis=1)[None]
    metric = METRICS["roc_auc"]
    w = np.arange(1, 9, dtype=float)
    assert metric.score_batch(y, C)[0] == pytest.approx(metric.score(y, C[0]), abs=1e-12)
    assert metric.score_batch(y, C, w)[0] == pytest.approx(metric.score(y, C[0], w), abs=1e-12)


def test_mixture_losses_match_explicit_mixtures(zoo):
    P, y = _codes(zoo)
    base = P.values[:, 0] + P.values[:, 2]
    names = ["rmse", "r2", "mae"] if P.task == "regression" else ["log_loss", "accuracy", "brier"]
    sw = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    for name in names:
        metric = METRICS[name]
        for weights in (None, sw):
            fast = metric.mixture_losses(y, P.values, weights)(base, 1 / 3)
            explicit = [
                metric.loss(y, (base + P.values[:, j]) / 3, weights) for j in range(P.n_members)
            ]
            np.testing.assert_allclose(fast, explicit, rtol=1e-10, err_msg=name)


def test_get_metric_rejects_unknown_and_wrong_task():
    with pytest.raises(ValueError, match="metric must be"):
        get_metric("f1", "binary")
    with pytest.raises(ValueError, match="is for classification"):
        get_metric("accuracy", "regression")
    assert get_metric("auto", "regression").name == "rmse"
