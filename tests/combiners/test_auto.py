import numpy as np
import pytest

from ensemblex import AutoCombiner, BestSingle, Mean, Predictions
from ensemblex.combiners import default_candidates
from ensemblex.combiners.auto import nested_scores, outer_splits
from ensemblex.metrics import get_metric
from ensemblex.tasks import encode_labels


def test_scores_every_candidate_and_picks_the_best(zoo):
    auto = AutoCombiner(cv=3).fit(zoo.oof, zoo.y)
    assert set(auto.scores_) == set(default_candidates())
    metric = auto.metric_
    sign = -1 if metric.greater_is_better else 1
    best = min(auto.scores_, key=lambda name: sign * auto.scores_[name])
    assert auto.method_ == best
    assert sign * auto.scores_[auto.method_] <= sign * auto.scores_["best"]
    pred = auto.predict(zoo.test)
    np.testing.assert_allclose(pred, auto.combiner_.predict(zoo.test))


def test_nested_scores_refit_inside_each_fold(binary_zoo):
    P, y = binary_zoo.oof, binary_zoo.y
    codes = encode_labels(y, P.classes)
    splits = outer_splits(codes, P.task, 4, 0)
    metric = get_metric("auto", P.task)
    result = nested_scores({"best": BestSingle()}, P, y, metric, splits)["best"]
    expected = np.zeros((P.n_samples, 2))
    for train, test in splits:
        j = BestSingle().fit(P.take(train), y[train]).best_index_
        expected[test] = P.values[test, j]
    assert result.score == pytest.approx(metric.score(codes, expected))


def test_never_picks_a_combiner_worse_than_the_best_member():
    rng = np.random.default_rng(0)
    y = rng.normal(size=300)
    good = y + rng.normal(scale=0.1, size=300)
    awful = [y + rng.normal(scale=5.0, size=300) + 3 for _ in range(4)]
    P = Predictions(
        np.stack([good, *awful], axis=1)[..., None], ["good", "a1", "a2", "a3", "a4"], "regression"
    )
    auto = AutoCombiner(candidates=["mean"], cv=3).fit(P, y)
    assert auto.method_ == "best"
    assert auto.scores_["mean"] > auto.scores_["best"]


def test_custom_candidates_and_unknown_names(regression_zoo):
    auto = AutoCombiner(candidates={"avg": Mean()}, cv=3).fit(regression_zoo.oof, regression_zoo.y)
    assert set(auto.scores_) == {"best", "avg"}
    with pytest.raises(ValueError, match="candidates must be names"):
        AutoCombiner(candidates=["nope"]).fit(regression_zoo.oof, regression_zoo.y)


def test_same_seed_same_choice(multiclass_zoo):
    a = AutoCombiner(cv=3, random_state=1).fit(multiclass_zoo.oof, multiclass_zoo.y)
    b = AutoCombiner(cv=3, random_state=1).fit(multiclass_zoo.oof, multiclass_zoo.y)
    assert a.scores_ == b.scores_
    np.testing.assert_array_equal(a.predict(multiclass_zoo.test), b.predict(multiclass_zoo.test))
