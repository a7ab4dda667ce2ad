import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold

from ensemblex import AutoCombiner, BestSingle, GreedySelection, Mean, Predictions
from ensemblex.combiners import default_candidates
from ensemblex.combiners.auto import nested_scores, outer_splits
from ensemblex.metrics import get_metric
from ensemblex.tasks import encode_labels


def brute_force_nested_cv(candidates, P, y, cv, seed, held_out=None):
    """Each candidate's pooled held-out score over shuffled (stratified) folds, written out.

    ``held_out``, a dict, receives each candidate's held-out predictions.
    """
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
            # an iterative solver starts every fold from the fit on all rows
            fold = clone(candidate).warm_start_from(clone(candidate).fit(P, y))
            fitted = fold.fit(P.take(train), y[train])
            pred[test] = fitted.predict(P.take(test))
        scores[name] = metric.score(codes, pred)
        if held_out is not None:
            held_out[name] = pred
    best = (max if metric.greater_is_better else min)(scores, key=scores.get)
    return scores, best


def test_picks_what_a_brute_force_nested_cv_picks(zoo):
    # every default candidate on regression; the cheaper ones on the class tasks
    names = list(default_candidates()) if zoo.oof.task == "regression" else ["mean", "pool"]
    auto = AutoCombiner(candidates=names, cv=3, random_state=0, ensemble=False)
    auto.fit(zoo.oof, zoo.y)
    pool = default_candidates()
    scores, best = brute_force_nested_cv(
        {name: pool[name] for name in ["best", *names]}, zoo.oof, zoo.y, cv=3, seed=0
    )
    assert auto.scores_ == pytest.approx(scores, rel=1e-9)
    assert auto.method_ == best
    refit = clone(pool[best]).fit(zoo.oof, zoo.y)
    np.testing.assert_allclose(auto.predict(zoo.test), refit.predict(zoo.test), rtol=1e-12)


def test_second_level_is_greedy_selection_over_held_out_predictions(zoo):
    names = ["mean", "greedy", "pool"]
    auto = AutoCombiner(candidates=names, cv=3, random_state=0).fit(zoo.oof, zoo.y)
    pool = default_candidates()
    held_out = {}
    scores, _ = brute_force_nested_cv(
        {name: pool[name] for name in ["best", *names]}, zoo.oof, zoo.y, 3, 0, held_out
    )
    Q = Predictions(
        np.stack(list(held_out.values()), axis=1),
        list(held_out),
        zoo.oof.task,
        classes=zoo.oof.classes,
    )
    level2 = GreedySelection(n_bags=20, random_state=0)
    level2_scores, _ = brute_force_nested_cv({"ensemble": level2}, Q, zoo.y, cv=3, seed=0)
    assert auto.scores_ == pytest.approx({**scores, **level2_scores}, rel=1e-9)
    weights = clone(level2).fit(Q, zoo.y).weights_
    expected = {name: w for name, w in zip(held_out, weights) if w > 0}
    assert auto.ensemble_weights_ == pytest.approx(expected)
    # the second level's refit: every candidate it weighs, refit on all rows, mixed
    combined = auto.candidate("ensemble").fit(zoo.oof, zoo.y)
    mixture = sum(
        w * clone(pool[name]).fit(zoo.oof, zoo.y).predict(zoo.test) for name, w in expected.items()
    )
    np.testing.assert_allclose(combined.predict(zoo.test), mixture, rtol=1e-9, atol=1e-12)
    if auto.method_ == "ensemble":
        np.testing.assert_allclose(auto.predict(zoo.test), mixture, rtol=1e-9, atol=1e-12)


def test_an_ensemble_of_one_candidate_is_that_candidate():
    rng = np.random.default_rng(0)
    y = rng.normal(size=300)
    good = y + rng.normal(scale=0.1, size=300)
    awful = [y + rng.normal(scale=5.0, size=300) + 3 for _ in range(4)]
    P = Predictions(
        np.stack([good, *awful], axis=1)[..., None], ["good", "a1", "a2", "a3", "a4"], "regression"
    )
    auto = AutoCombiner(candidates=["mean"], cv=3).fit(P, y)
    assert auto.ensemble_weights_ == {"best": 1.0}
    assert auto.method_ == "best"
    assert isinstance(auto.combiner_, BestSingle)


def test_time_limit_skips_candidates_not_started_and_progress_names_each(binary_zoo):
    seen = []
    auto = AutoCombiner(cv=3, time_limit=1e-9).fit(
        binary_zoo.oof, binary_zoo.y, progress=lambda name, done, total: seen.append(name)
    )
    assert list(auto.scores_) == ["best", "ensemble"] or list(auto.scores_) == ["best"]
    binary = default_candidates(task="binary")
    assert auto.skipped_ == [n for n in binary if n != "best"]
    assert seen[0] == "best"
    seen.clear()
    full = AutoCombiner(cv=3).fit(
        binary_zoo.oof, binary_zoo.y, progress=lambda name, done, total: seen.append(name)
    )
    starts = [name for name in seen if "(" not in name]
    assert starts == [*binary, "ensemble"] and full.skipped_ == []
    # and every outer fold of every first-level candidate, as it finishes
    for name in binary:
        assert [n for n in seen if n.startswith(f"{name} (")] == [
            f"{name} ({k}/3 folds)" for k in (1, 2, 3)
        ]
    with pytest.raises(ValueError, match="time_limit"):
        AutoCombiner(time_limit=0).fit(binary_zoo.oof, binary_zoo.y)


def test_multiclass_default_leaves_out_the_multinomial_stacks(multiclass_zoo):
    auto = AutoCombiner(cv=3).fit(multiclass_zoo.oof, multiclass_zoo.y)
    assert set(auto.scores_) == {"best", "mean", "greedy", "weighted", "pool", "ensemble"}
    named = AutoCombiner(candidates=["stack"], cv=3).fit(multiclass_zoo.oof, multiclass_zoo.y)
    assert "stack" in named.scores_


def test_spline_stacking_is_a_default_candidate_for_regression_only():
    assert "stack_spline" in default_candidates(task="regression")
    for task in ("binary", "multiclass"):
        assert "stack_spline" not in default_candidates(task=task)
    assert "stack_spline" in default_candidates()  # and chosen by name for any task


def test_unknown_candidate_name_is_refused(regression_zoo):
    auto = AutoCombiner(candidates=["mean"], cv=3, ensemble=False)
    auto.fit(regression_zoo.oof, regression_zoo.y)
    with pytest.raises(ValueError, match="unknown candidate 'nope'"):
        auto.candidate("nope")
    with pytest.raises(ValueError, match="second level was not fitted"):
        auto.candidate("ensemble")


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
    assert set(auto.scores_) == {"best", "avg", "ensemble"}
    with pytest.raises(ValueError, match="candidates must be names"):
        AutoCombiner(candidates=["nope"]).fit(regression_zoo.oof, regression_zoo.y)


def test_same_seed_same_choice_and_another_seed_other_folds(regression_zoo):
    P, y = regression_zoo.oof, regression_zoo.y
    a = AutoCombiner(cv=3, random_state=1).fit(P, y)
    b = AutoCombiner(cv=3, random_state=1).fit(P, y)
    c = AutoCombiner(cv=3, random_state=2).fit(P, y)
    assert set(a.scores_) == {*default_candidates(), "ensemble"}
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
    assert first.scores_ == {k: v for k, v in best.scores_.items() if k != "ensemble"}
    np.testing.assert_allclose(first.predict(P), P.values.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(first.weights_, np.full(5, 0.2))
    with pytest.raises(ValueError, match="'select' parameter of AutoCombiner"):
        AutoCombiner(select="worst").fit(P, y)
    with pytest.raises(ValueError, match="candidates must not be empty"):
        AutoCombiner(candidates=[]).fit(P, y)


def test_default_choice_is_the_second_level_unless_the_best_member_beats_it(zoo):
    auto = AutoCombiner(cv=3, random_state=0).fit(zoo.oof, zoo.y)
    argmin = AutoCombiner(cv=3, random_state=0, select="best").fit(zoo.oof, zoo.y)
    assert argmin.scores_ == auto.scores_
    metric = get_metric("auto", zoo.oof.task)
    loss = {n: -s if metric.greater_is_better else s for n, s in auto.scores_.items()}
    first = {n: v for n, v in loss.items() if n != "ensemble"}
    expected = "ensemble" if loss["ensemble"] < loss["best"] else min(first, key=first.get)
    if expected == "ensemble" and len(auto.ensemble_weights_) == 1:
        expected = next(iter(auto.ensemble_weights_))
    assert auto.method_ == expected
    assert argmin.method_ in (min(loss, key=loss.get), *auto.ensemble_weights_)


def test_a_second_level_worse_than_the_best_member_falls_back_to_the_best_candidate():
    from ensemblex.combiners.auto import ENSEMBLE, NestedScore

    results = {
        "best": NestedScore(0.30, 0.30, 0.0),
        "greedy": NestedScore(0.29, 0.29, 0.0),
        ENSEMBLE: NestedScore(0.31, 0.31, 0.0),
    }
    assert AutoCombiner()._prefer_ensemble(results) == "greedy"
    results[ENSEMBLE] = NestedScore(0.295, 0.295, 0.0)
    assert AutoCombiner()._prefer_ensemble(results) == ENSEMBLE


def test_threads_give_the_same_numbers(zoo):
    from threadpoolctl import threadpool_info

    blas_threads = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    one = AutoCombiner(cv=3, random_state=0).fit(zoo.oof, zoo.y)
    two = AutoCombiner(cv=3, random_state=0, n_jobs=2).fit(zoo.oof, zoo.y)
    # BLAS sums in another order with one thread per fold: equal to rounding
    assert two.scores_ == pytest.approx(one.scores_, rel=1e-10) and two.method_ == one.method_
    np.testing.assert_allclose(two.predict(zoo.test), one.predict(zoo.test), rtol=1e-9, atol=1e-15)
    from threadpoolctl import threadpool_info

    assert {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} == set(
        blas_threads
    )


def test_features_add_their_default_candidate_unless_its_design_is_too_large(monkeypatch):
    import ensemblex.combiners.auto as auto_module

    rng = np.random.default_rng(0)
    n = 240
    X = rng.normal(size=(n, 3))
    y = np.where(X[:, 0] + 0.5 * rng.normal(size=n) > 0, "b", "a")
    p = 1 / (1 + np.exp(-np.stack([X[:, 0], 0.5 * X[:, 0] + X[:, 2]], axis=1)))
    P = Predictions(np.stack([1 - p, p], axis=2), ["m0", "m1"], "binary", np.array(["a", "b"]))
    with_features = AutoCombiner(cv=3).fit(P, y, X=X)
    assert "stack_features_lgbm" in with_features.scores_
    assert with_features.skipped_for_cost_ == []
    without = AutoCombiner(cv=3).fit(P, y)
    assert "stack_features_lgbm" not in without.scores_
    # rows x outputs x (member signals + features) = 240 x 1 x 5 = 1200 cells
    monkeypatch.setattr(auto_module, "MAX_FEATURE_DEFAULT_CELLS", 1000)
    costly = AutoCombiner(cv=3).fit(P, y, X=X)
    assert "stack_features_lgbm" not in costly.scores_
    assert costly.skipped_for_cost_ == ["stack_features_lgbm"]
    # asked by name, it is compared whatever its cost
    named = AutoCombiner(candidates=["mean", "stack_features_lgbm"], cv=3).fit(P, y, X=X)
    assert "stack_features_lgbm" in named.scores_


def test_the_chosen_ensemble_reuses_the_pool_fitted_on_all_rows(multiclass_zoo, monkeypatch):
    from ensemblex import Pooling

    rows = []
    fit = Pooling._fit

    def counted(self, values, *args, **kwargs):
        rows.append(len(values))
        return fit(self, values, *args, **kwargs)

    monkeypatch.setattr(Pooling, "_fit", counted)
    P, y = multiclass_zoo.oof, multiclass_zoo.y
    auto = AutoCombiner(candidates=["greedy", "pool"], cv=3).fit(P, y)
    assert auto.method_ == "ensemble" and "pool" in auto.ensemble_weights_
    # one fit on all rows (the outer folds' warm start, and the refit), one per outer fold
    assert rows.count(P.n_samples) == 1 and len(rows) == 1 + auto.n_splits_
    rows.clear()
    refit = auto.candidate("ensemble").fit(P, y)
    assert rows == [P.n_samples]
    np.testing.assert_allclose(
        auto.predict(multiclass_zoo.test), refit.predict(multiclass_zoo.test), rtol=1e-12
    )
