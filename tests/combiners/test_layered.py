"""CombinerEnsemble: a weighted mean of combiners, each refit on the same rows."""

import numpy as np
import pytest
from sklearn.base import clone

from ensemblex import CombinerEnsemble, GreedySelection, Mean, Pooling


def test_predicts_the_weighted_mean_of_its_refit_combiners(zoo):
    parts = {"mean": Mean(), "greedy": GreedySelection(), "pool": Pooling()}
    ensemble = CombinerEnsemble(parts, {"mean": 1.0, "greedy": 0.0, "pool": 3.0})
    ensemble.fit(zoo.oof, zoo.y)
    np.testing.assert_allclose(ensemble.combiner_weights_, [0.25, 0.0, 0.75])
    expected = sum(
        w * clone(parts[name]).fit(zoo.oof, zoo.y).predict(zoo.test)
        for name, w in (("mean", 0.25), ("pool", 0.75))
    )
    np.testing.assert_allclose(ensemble.predict(zoo.test), expected, rtol=1e-12, atol=1e-15)
    assert all(parts[name] is not fitted for name, fitted in ensemble.combiners_.items())
    assert not hasattr(parts["pool"], "weights_")  # the parameters are not fitted in place


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"mean": 1.0}, "same non-empty set"),
        ({"mean": -1.0, "pool": 2.0}, "non-negative"),
        ({"mean": 0.0, "pool": 0.0}, "not all zero"),
        ({"mean": float("nan"), "pool": 1.0}, "non-negative"),
    ],
)
def test_bad_weights_are_refused(regression_zoo, weights, message):
    ensemble = CombinerEnsemble({"mean": Mean(), "pool": Pooling()}, weights)
    with pytest.raises(ValueError, match=message):
        ensemble.fit(regression_zoo.oof, regression_zoo.y)


def test_member_weights_compose_only_for_weighted_means(binary_zoo):
    from ensemblex import AutoCombiner
    from ensemblex.combiners.base import mixture_weights

    P, y = binary_zoo.oof, binary_zoo.y
    linear = CombinerEnsemble(
        {"mean": Mean(), "greedy": GreedySelection()}, {"mean": 1, "greedy": 3}
    )
    linear.fit(P, y)
    greedy = linear.combiners_["greedy"].weights_
    expected = 0.25 * np.full(P.n_members, 1 / P.n_members) + 0.75 * greedy
    np.testing.assert_allclose(mixture_weights(linear), expected)
    np.testing.assert_allclose(
        linear.predict(binary_zoo.test), np.einsum("nmk,m->nk", binary_zoo.test.values, expected)
    )
    with_pool = CombinerEnsemble({"mean": Mean(), "pool": Pooling()}, {"mean": 1, "pool": 1})
    assert mixture_weights(with_pool.fit(P, y)) is None
    assert mixture_weights(Pooling().fit(P, y)) is None
    auto = AutoCombiner(candidates=["greedy"], cv=3, select="first").fit(P, y)
    np.testing.assert_array_equal(mixture_weights(auto), auto.combiner_.weights_)


def test_reused_combiners_are_taken_as_fitted_for_the_next_fit_only(zoo):
    pool = Pooling().fit(zoo.oof, zoo.y)
    parts = {"mean": Mean(), "pool": Pooling()}
    ensemble = CombinerEnsemble(parts, {"mean": 1.0, "pool": 1.0})
    ensemble.reuse({"pool": pool}).fit(zoo.oof, zoo.y)
    assert ensemble.combiners_["pool"] is pool
    refit = clone(ensemble).fit(zoo.oof, zoo.y)
    np.testing.assert_allclose(ensemble.predict(zoo.test), refit.predict(zoo.test), rtol=1e-12)
    ensemble.fit(zoo.oof, zoo.y)  # a second fit refits every combiner
    assert ensemble.combiners_["pool"] is not pool
