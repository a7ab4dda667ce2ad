"""``used_members``: the members a fitted combiner's output depends on, so that a deployed
model can leave the others out."""

import numpy as np
import pytest

from ensemblex.combiners import AutoCombiner, CombinerEnsemble, GreedySelection, default_candidates
from ensemblex.predictions import Predictions


def _without(P: Predictions, used: np.ndarray) -> Predictions:
    """``P`` with the unused members' columns replaced by a constant."""
    values = P.values.copy()
    values[:, ~used] = 0.0 if P.task == "regression" else 1.0 / P.n_outputs
    return Predictions(values, P.members, P.task, classes=P.classes)


def _fitted(zoo):
    candidates = default_candidates("auto", 0, task=zoo.oof.task)
    fitted = {name: c.fit(zoo.oof, zoo.y) for name, c in candidates.items()}
    weights = {"greedy": 0.5, "best": 0.5}
    fitted["ensemble"] = CombinerEnsemble(
        {"greedy": GreedySelection(), "best": candidates["best"]}, weights
    ).fit(zoo.oof, zoo.y)
    return fitted


@pytest.mark.parametrize("zoo", ["regression", "binary", "multiclass"], indirect=True)
def test_unused_members_do_not_change_the_output(zoo):
    for name, combiner in _fitted(zoo).items():
        used = combiner.used_members()
        assert used.dtype == bool and used.shape == (zoo.oof.n_members,) and used.any(), name
        np.testing.assert_allclose(
            combiner.predict(_without(zoo.test, used)),
            combiner.predict(zoo.test),
            rtol=1e-12,
            atol=1e-12,
            err_msg=name,
        )


@pytest.mark.parametrize("zoo", ["binary"], indirect=True)
def test_which_members_each_combiner_uses(zoo):
    fitted = _fitted(zoo)
    assert fitted["mean"].used_members().all()
    assert fitted["best"].used_members().sum() == 1
    for name in ("greedy", "weighted", "pool"):
        np.testing.assert_array_equal(
            fitted[name].used_members(), fitted[name].weights_ > 0, err_msg=name
        )
    assert not fitted["greedy"].used_members().all()  # greedy leaves members out here
    stack = fitted["stack_regularized"]
    assert np.flatnonzero(stack.used_members()).tolist() == sorted(stack.kept_indices_)
    ensemble = fitted["ensemble"]
    np.testing.assert_array_equal(
        ensemble.used_members(),
        fitted["greedy"].used_members() | fitted["best"].used_members(),
    )
    auto = AutoCombiner(candidates=["best", "greedy"], random_state=0).fit(zoo.oof, zoo.y)
    np.testing.assert_array_equal(auto.used_members(), auto.combiner_.used_members())
