import numpy as np

from ensemblex import BestSingle, Mean
from ensemblex.metrics import get_metric
from ensemblex.tasks import encode_labels


def _codes(zoo, y):
    return y if zoo.oof.classes is None else encode_labels(y, zoo.oof.classes)


def test_mean_is_the_plain_average(zoo):
    pred = Mean().fit(zoo.oof, zoo.y).predict(zoo.test)
    np.testing.assert_allclose(pred, zoo.test.values.mean(axis=1))


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
    combiner = BestSingle(metric="roc_auc").fit(binary_zoo.oof, binary_zoo.y)
    scores = combiner.member_scores_
    assert combiner.best_member_ == max(scores, key=scores.get)


def test_predict_reorders_members_by_name(regression_zoo):
    combiner = BestSingle().fit(regression_zoo.oof, regression_zoo.y)
    shuffled = regression_zoo.test.select(list(reversed(regression_zoo.test.members)))
    np.testing.assert_allclose(combiner.predict(shuffled), combiner.predict(regression_zoo.test))
