import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ensemblex import BestSingle, Mean
from ensemblex.metrics import get_metric
from ensemblex.tasks import encode_labels


def _codes(zoo, y):
    return y if zoo.oof.classes is None else encode_labels(y, zoo.oof.classes)


def test_mean_is_the_plain_average(zoo):
    pred = Mean().fit(zoo.oof, zoo.y).predict(zoo.test)
    np.testing.assert_allclose(pred, zoo.test.values.mean(axis=1))


def test_mean_by_hand():
    P = np.array([[[0.2, 0.8], [0.6, 0.4], [0.1, 0.9]], [[0.5, 0.5], [1.0, 0.0], [0.0, 1.0]]])
    pred = Mean().fit(P, [1, 0]).predict(P)
    np.testing.assert_allclose(pred, [[0.3, 0.7], [0.5, 0.5]], rtol=1e-12)


def test_sample_weight_is_checked(regression_zoo):
    P, y = regression_zoo.oof, regression_zoo.y
    for bad, match in [
        (-np.ones(len(y)), "Negative values"),
        (np.zeros(len(y)), "non-zero|not be all zero"),
        (np.ones(3), "sample_weight.shape"),
        (np.full(len(y), np.nan), "NaN"),
    ]:
        with pytest.raises(ValueError, match=match):
            BestSingle().fit(P, y, sample_weight=bad)


def test_best_single_picks_the_member_with_the_best_oof_score(zoo):
    combiner = BestSingle().fit(zoo.oof, zoo.y)
    metric = get_metric("auto", zoo.oof.task)
    y = _codes(zoo, zoo.y)
    losses = [metric.loss(y, zoo.oof.values[:, j]) for j in range(zoo.oof.n_members)]
    assert combiner.best_index_ == int(np.argmin(losses))
    assert combiner.best_member_ == zoo.oof.members[combiner.best_index_]
    np.testing.assert_allclose(combiner.predict(zoo.test), zoo.test.values[:, combiner.best_index_])
    assert set(combiner.member_scores_) == set(zoo.oof.members)


def test_best_single_with_a_greater_is_better_metric(binary_zoo):
    P = binary_zoo.oof
    combiner = BestSingle(metric="roc_auc").fit(P, binary_zoo.y)
    positive = binary_zoo.y == P.classes[1]
    auc = {m: roc_auc_score(positive, P.values[:, j, 1]) for j, m in enumerate(P.members)}
    assert combiner.member_scores_ == pytest.approx(auc, rel=1e-12)
    best = max(auc, key=auc.get)  # first of equal scores, as max() keeps
    assert combiner.best_member_ == best
    np.testing.assert_array_equal(combiner.weights_, np.eye(P.n_members)[P.members.index(best)])


def test_predict_reorders_members_by_name(regression_zoo):
    combiner = BestSingle().fit(regression_zoo.oof, regression_zoo.y)
    shuffled = regression_zoo.test.select(list(reversed(regression_zoo.test.members)))
    np.testing.assert_allclose(combiner.predict(shuffled), combiner.predict(regression_zoo.test))
