import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold

from ensemblex import AutoCombiner, BestSingle, Mean, Predictions
from ensemblex.combiners import default_candidates
from ensemblex.combiners.auto import nested_scores, outer_splits
from ensemblex.metrics import get_metric
from ensemblex.tasks import encode_labels


def brute_force_nested_cv(candidates, P, y, cv, seed):
    """Each candidate's pooled held-out score over shuffled (stratified) folds, written out."""
    metric = get_metric("auto", P.task)
    if P.classes is None:
        codes, splitter = y, KFold(cv, shuffle=True, random_state=seed)
    else:
        codes, splitter = (
            encode_labels(y, P.classes),
            StratifiedKFold(cv, shuffle=True, random_state=seed),
        )
    scores = {}
    for name, candidate in candidates.items():
        pred = np.zeros((P.n_samples, P.n_outputs))
        for train, test in splitter.split(np.zeros((P.n_samples, 1)), codes):
            fitted = clone(candidate).fit(P.take(train), y[train])
            pred[test] = fitted.predict(P.take(test))
        scores[name] = metric.score(codes, pred)
    best = (max if metric.greater_is_better else min)(scores, key=scores.get)
    return scores, best


def test_picks_what_a_brute_force_nested_cv_picks(zoo):
    # every default candidate on regression; the cheaper ones on the class tasks
    names = list(default_candidates()) if zoo.oof.task == "regression" else ["mean", "stack"]
    auto = AutoCombiner(candidates=names, cv=3, random_state=0).fit(zoo.oof, zoo.y)
    pool = default_candidates()
    scores, best = brute_force_nested_cv(
        {name: pool[name] for name in ["best", *names]}, zoo.oof, zoo.y, cv=3, seed=0
    )
    assert auto.scores_ == pytest.approx(scores, rel=1e-9)
    assert auto.method_ == best
    refit = clone(pool[best]).fit(zoo.oof, zoo.y)
    np.testing.assert_allclose(auto.predict(zoo.test), refit.predict(zoo.test), rtol=1e-12)


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


def test_same_seed_same_choice_and_another_seed_other_folds(regression_zoo):
    P, y = regression_zoo.oof, regression_zoo.y
    a = AutoCombiner(cv=3, random_state=1).fit(P, y)
    b = AutoCombiner(cv=3, random_state=1).fit(P, y)
    c = AutoCombiner(cv=3, random_state=2).fit(P, y)
    assert set(a.scores_) == set(default_candidates())
    assert a.scores_ == b.scores_
    np.testing.assert_array_equal(a.predict(regression_zoo.test), b.predict(regression_zoo.test))
    assert a.scores_ != c.scores_
    scores, _ = brute_force_nested_cv({"mean": Mean()}, P, y, cv=3, seed=2)
    assert c.scores_["mean"] == pytest.approx(scores["mean"], rel=1e-12)


def test_select_first_refits_the_requested_method_and_still_scores_the_best_member():
    rng = np.random.default_rng(0)
    y = rng.normal(size=300)
    good = y + rng.normal(scale=0.1, size=300)
    awful = [y + rng.normal(scale=5.0, size=300) + 3 for _ in range(4)]
    P = Predictions(
        np.stack([good, *awful], axis=1)[..., None], ["good", "a1", "a2", "a3", "a4"], "regression"
    )
    best = AutoCombiner(candidates=["mean"], cv=3).fit(P, y)
    first = AutoCombiner(candidates=["mean"], cv=3, select="first").fit(P, y)
    assert best.method_ == "best" and first.method_ == "mean"
    assert first.scores_ == best.scores_
    np.testing.assert_allclose(first.predict(P), P.values.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(first.weights_, np.full(5, 0.2))
    with pytest.raises(ValueError, match="'select' parameter of AutoCombiner"):
        AutoCombiner(select="worst").fit(P, y)
    with pytest.raises(ValueError, match="candidates must not be empty"):
        AutoCombiner(candidates=[]).fit(P, y)
