"""Every combiner's state survives a save and load: the same predictions to 1e-12, no pickle."""

import json

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from ensemblex import (
    AutoCombiner,
    BestSingle,
    CombinerEnsemble,
    GreedySelection,
    Mean,
    Pooling,
    Stacking,
    Weighted,
)
from ensemblex.combiners import Combiner
from ensemblex.combiners.persistence import combiner_state, load_combiner

COMBINERS = {
    "mean": Mean,
    "best": BestSingle,
    "weighted": Weighted,
    "greedy": GreedySelection,
    "stack": Stacking,
    "stack_regularized": Stacking.regularized,
    "stack_spline": lambda: Stacking(basis="spline"),
    "auto": lambda: AutoCombiner(candidates=["mean", "greedy"], cv=3),
    "auto_nesting_a_stack": lambda: AutoCombiner(candidates=["stack"], cv=3, select="first"),
    "pool": Pooling,
    "ensemble_of_combiners": lambda: CombinerEnsemble(
        {"mean": Mean(), "stack": Stacking(), "pool": Pooling()},
        {"mean": 1.0, "stack": 2.0, "pool": 1.0},
    ),
}


def _round_trip(combiner, folder):
    """Save, pass the state through JSON text (as a manifest does), load."""
    state, files = combiner_state(combiner, folder)
    text = json.dumps(state, allow_nan=False)  # strict JSON: no NaN or inf literals
    assert all(path.suffix == ".npz" and path.parent == folder for path in files)
    return load_combiner(json.loads(text), folder)


@pytest.mark.parametrize("name", list(COMBINERS))
def test_round_trip_predicts_the_same(zoo, name, tmp_path):
    combiner = COMBINERS[name]().fit(zoo.oof, zoo.y)
    loaded = _round_trip(combiner, tmp_path)
    assert type(loaded) is type(combiner)
    assert loaded.get_params().keys() == combiner.get_params().keys()
    assert loaded.members_ == combiner.members_
    assert loaded.metric_ is combiner.metric_
    if zoo.oof.classes is not None:
        np.testing.assert_array_equal(loaded.classes_, combiner.classes_)
    expected = combiner.predict(zoo.test)
    np.testing.assert_allclose(loaded.predict(zoo.test), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(loaded.predict(zoo.test.values), expected, rtol=0, atol=1e-12)
    if hasattr(combiner, "weights_"):
        np.testing.assert_array_equal(loaded.weights_, combiner.weights_)


def test_weighted_stacking_round_trip_uses_the_weighted_lasso(regression_zoo, tmp_path):
    sw = np.linspace(0.2, 3.0, len(regression_zoo.y))
    stack = Stacking.regularized().fit(regression_zoo.oof, regression_zoo.y, sample_weight=sw)
    state, _ = combiner_state(stack, tmp_path)
    models = [m["model"] for m in state["fitted"]["meta_models_"]]
    assert models == ["RidgeCV", "LassoCV", "ElasticNetCV"]
    loaded = load_combiner(json.loads(json.dumps(state)), tmp_path)
    np.testing.assert_allclose(
        loaded.predict(regression_zoo.test),
        stack.predict(regression_zoo.test),
        rtol=0,
        atol=1e-12,
    )


def test_state_is_data_with_the_numbers_as_arrays(binary_zoo):
    stack = Stacking().fit(binary_zoo.oof, binary_zoo.y)
    state, arrays = stack.get_state()
    json.dumps(state, allow_nan=False)
    assert state["class"] == "Stacking"
    assert state["classes"] == ["benign", "malignant"]
    assert state["members"] == list(binary_zoo.oof.members)
    assert state["params"]["meta_learner"] == "auto"
    assert state["metric"] == "log_loss"
    model = stack.meta_models_[0].named_steps["model"]
    scaler = stack.meta_models_[0].named_steps["scale"]
    np.testing.assert_array_equal(arrays["meta_models_.0.fitted.coef_"], model.coef_)
    np.testing.assert_array_equal(arrays["meta_models_.0.scale.mean_"], scaler.mean_)
    assert all(a.dtype.kind in "biuf" for a in arrays.values())


def test_auto_combiner_nests_the_chosen_state_and_keeps_custom_candidates(regression_zoo, tmp_path):
    auto = AutoCombiner(candidates={"avg": Mean(), "top": GreedySelection(5)}, cv=3)
    auto.fit(regression_zoo.oof, regression_zoo.y)
    state, arrays = auto.get_state()
    nested = state["fitted"]["combiner_"]["__combiner__"]
    assert nested["class"] == type(auto.combiner_).__name__
    assert all(k.startswith("combiner_.") for k in arrays)
    if auto.method_ == "ensemble":  # each combiner it mixes, nested under its name
        assert nested["class"] == "CombinerEnsemble"
        for name in auto.ensemble_weights_:
            assert any(k.startswith(f"combiner_.combiners_.{name}.") for k in arrays)
    else:
        assert "combiner_.weights_" in arrays
    loaded = _round_trip(auto, tmp_path)
    assert loaded.method_ == auto.method_ and loaded.scores_ == auto.scores_
    candidates = loaded.get_params()["candidates"]
    assert isinstance(candidates["top"], GreedySelection) and candidates["top"].n_iterations == 5
    np.testing.assert_allclose(
        loaded.predict(regression_zoo.test), auto.predict(regression_zoo.test), rtol=0, atol=0
    )


def test_non_finite_numbers_survive_strict_json(regression_zoo, tmp_path):
    stack = Stacking(meta_learner="ridge").fit(regression_zoo.oof, regression_zoo.y)
    stack.condition_number_after_ = float("inf")  # as for a singular design
    loaded = _round_trip(stack, tmp_path)
    assert loaded.condition_number_after_ == float("inf")
    assert np.isnan(loaded.meta_errors_[0])  # a single learner has no CV error


def test_from_state_dispatches_on_the_class_name(multiclass_zoo):
    greedy = GreedySelection(n_iterations=7).fit(multiclass_zoo.oof, multiclass_zoo.y)
    state, arrays = greedy.get_state()
    loaded = Combiner.from_state(state, arrays)
    assert isinstance(loaded, GreedySelection) and loaded.n_iterations == 7
    assert loaded.indices_ == greedy.indices_
    with pytest.raises(ValueError, match="holds a GreedySelection, not a Stacking"):
        Stacking.from_state(state, arrays)


def test_bad_states_are_refused(regression_zoo, tmp_path):
    mean = Mean().fit(regression_zoo.oof, regression_zoo.y)
    state, _ = combiner_state(mean, tmp_path)
    with pytest.raises(ValueError, match="unknown combiner class 'Pickled'"):
        load_combiner({**state, "class": "Pickled"}, tmp_path)
    with pytest.raises(ValueError, match="arrays must name an .npz file"):
        load_combiner({**state, "arrays": "../elsewhere.npz"}, tmp_path)
    with pytest.raises(ValueError, match="weights_ must be 5 finite non-negative"):
        Combiner.from_state(state, {"weights_": np.ones(3)})
    with pytest.raises(ValueError, match="refers to an array 'weights_'"):
        Combiner.from_state(state, {})
    with pytest.raises(ValueError, match="invalid fitted attributes"):
        Combiner.from_state(
            {**state, "fitted": {**state["fitted"], "_private": 1}}, {"weights_": mean.weights_}
        )
    np.savez(tmp_path / "objects.npz", weights_=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle=False"):
        load_combiner({**state, "arrays": "objects.npz"}, tmp_path)


def test_unfitted_combiners_have_no_state(tmp_path):
    with pytest.raises(NotFittedError, match="Mean is not fitted yet"):
        Mean().get_state()
    with pytest.raises(NotFittedError, match="Weighted is not fitted yet; call fit first"):
        Weighted().predict(np.zeros((2, 2, 1)))
    with pytest.raises(TypeError, match="combiner must be a Combiner"):
        combiner_state(object(), tmp_path)
