import numpy as np
import pytest

from ensemblex import Predictions
from ensemblex.predictions import as_predictions, quantile_levels, quantile_outputs


def _proba(n=4, m=2, k=3, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.uniform(size=(n, m, k))
    return v / v.sum(axis=2, keepdims=True)


def test_shapes_and_views():
    P = Predictions(_proba(), ["a", "b"], "multiclass", classes=["x", "y", "z"], costs=[1, 2])
    assert P.shape == (4, 2, 3)
    assert (P.n_samples, P.n_members, P.n_outputs) == (4, 2, 3)
    np.testing.assert_array_equal(P.member("b"), P.values[:, 1])
    swapped = P.select(["b", "a"])
    np.testing.assert_array_equal(swapped.values[:, 0], P.values[:, 1])
    np.testing.assert_array_equal(swapped.costs, [2, 1])
    assert P.take([0, 2]).n_samples == 2


def test_two_dimensional_values_mean_one_output():
    P = Predictions(np.zeros((3, 2)), ["a", "b"], "regression")
    assert P.shape == (3, 2, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(values=np.full((3, 1, 1), np.nan), members=["a"], task="regression"), "NaN or inf"),
        (dict(values=np.full((3, 1, 1), np.inf), members=["a"], task="regression"), "NaN or inf"),
        (dict(values=np.zeros((3, 2, 1)), members=["a"], task="regression"), "1 member names"),
        (dict(values=np.zeros((3, 2, 1)), members=["a", "a"], task="regression"), "duplicate"),
        (dict(values=np.zeros((3, 1, 2)), members=["a"], task="regression"), "n_outputs=1"),
        (
            dict(values=np.zeros((3, 1, 2)), members=["a"], task="regression", outputs=["value"]),
            "1 output names for n_outputs=2",
        ),
        (
            dict(values=np.zeros((3, 1, 2)), members=["a"], task="regression", outputs=["m", "v"]),
            "regression outputs must be",
        ),
        (
            dict(
                values=np.zeros((3, 1, 2)),
                members=["a"],
                task="regression",
                outputs=["var", "mean"],
            ),
            "regression outputs must be",
        ),
        (
            dict(
                values=np.zeros((3, 1, 2)),
                members=["a"],
                task="regression",
                outputs=["q0.9", "q0.1"],
            ),
            "increasing",
        ),
        (
            dict(
                values=np.zeros((3, 1, 2)), members=["a"], task="regression", outputs=["q0", "q0.5"]
            ),
            "inside \\(0, 1\\)",
        ),
        (
            dict(
                values=_proba(),
                members=["a", "b"],
                task="multiclass",
                classes=list("xyz"),
                outputs=list("xyw"),
            ),
            "classification outputs are the classes",
        ),
        (dict(values=_proba(k=3), members=["a", "b"], task="binary"), "2 outputs"),
        (dict(values=_proba() * 1.1, members=["a", "b"], task="multiclass"), "summing to"),
        (dict(values=_proba() - 0.5, members=["a", "b"], task="multiclass"), "in \\[0, 1\\]"),
        (dict(values=_proba(), members=["a", "b"], task="multiclass", classes=[1, 2]), "classes"),
        (dict(values=np.zeros((0, 1, 1)), members=["a"], task="regression"), "no rows"),
        (dict(values=np.zeros((3, 1, 1)), members=["a"], task="ranking"), "task must be"),
        (dict(values=np.zeros((3, 1, 1)), members=["a"], task="regression", costs=[-1]), "costs"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Predictions(**kwargs)


def test_error_names_member_and_row():
    v = np.zeros((5, 2, 1))
    v[3, 1, 0] = np.nan
    with pytest.raises(ValueError, match="member 'b' has NaN or inf at row 3"):
        Predictions(v, ["a", "b"], "regression", source="oof.csv")


def test_as_predictions_reads_task_from_outputs():
    assert as_predictions(np.zeros((2, 3, 1))).task == "regression"
    assert as_predictions(np.full((2, 3, 2), 0.5)).task == "binary"
    assert as_predictions(_proba()).task == "multiclass"
    with pytest.raises(ValueError, match="n_samples, n_members, n_outputs"):
        as_predictions(np.zeros((2, 3)))


def test_gaussian_outputs():
    rng = np.random.default_rng(0)
    values = np.stack([rng.normal(size=(5, 3)), rng.uniform(0, 2, size=(5, 3))], axis=2)
    values[0, 0, 1] = 0.0  # a variance of zero is allowed
    P = Predictions(values, ["a", "b", "c"], "regression", outputs=("mean", "var"))
    assert (P.outputs, P.output_kind, P.quantiles, P.classes) == (
        ("mean", "var"),
        "gaussian",
        None,
        None,
    )
    kept = P.select(["c", "a"]).take([1, 3])
    assert kept.outputs == ("mean", "var")
    np.testing.assert_array_equal(kept.values, values[[1, 3]][:, [2, 0]])
    values[2, 1, 1] = -0.5
    with pytest.raises(
        ValueError, match="member 'b' has variance -0.5 at row 2; expected var >= 0"
    ):
        Predictions(values, ["a", "b", "c"], "regression", outputs=["mean", "var"])


def test_quantile_outputs():
    names = quantile_outputs([0.05, 0.5, 0.95])
    assert names == ("q0.05", "q0.5", "q0.95")
    P = Predictions(np.zeros((4, 2, 3)), ["a", "b"], "regression", outputs=names)
    assert P.output_kind == "quantiles"
    np.testing.assert_array_equal(P.quantiles, [0.05, 0.5, 0.95])
    assert P.take([0]).outputs == names
    assert quantile_levels(["q0.1", "mean"]) is None
    assert quantile_levels(["qx"]) is None


def test_outputs_as_one_string_is_a_type_error():
    with pytest.raises(TypeError, match="outputs must be a sequence of names"):
        Predictions(np.zeros((3, 1, 1)), ["a"], "regression", outputs="value")


def test_default_outputs():
    assert Predictions(np.zeros((3, 2, 1)), ["a", "b"], "regression").outputs == ("value",)
    assert Predictions(np.zeros((3, 2, 1)), ["a", "b"], "regression").output_kind == "value"
    P = Predictions(_proba(), ["a", "b"], "multiclass", classes=[3, 5, 7])
    assert (P.outputs, P.output_kind) == (("3", "5", "7"), "probabilities")
    named = Predictions(_proba(), ["a", "b"], "multiclass", outputs=["x", "y", "z"])
    assert named.classes.tolist() == ["x", "y", "z"]


def test_predictions_module_does_not_import_tables():
    import ast
    import inspect

    import ensemblex.predictions as module

    imported = set()
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert "ensemblex.tables" not in imported
    assert not hasattr(Predictions, "read") and not hasattr(Predictions, "from_frame")


def test_take_keeps_every_field_without_a_second_check():
    rng = np.random.default_rng(0)
    values = rng.dirichlet(np.ones(3), size=(6, 2))
    P = Predictions(values, ["a", "b"], "multiclass", classes=["x", "y", "z"], costs=[1.0, 2.0])
    for rows in (np.array([4, 0, 2]), np.arange(6) % 2 == 0, slice(1, 3)):
        sub = P.take(rows)
        full = Predictions(values[rows], ["a", "b"], "multiclass", classes=["x", "y", "z"])
        np.testing.assert_array_equal(sub.values, full.values)
        assert sub.members == P.members and sub.task == P.task and sub.outputs == full.outputs
        np.testing.assert_array_equal(sub.classes, P.classes)
        np.testing.assert_array_equal(sub.costs, P.costs)
    with pytest.raises(ValueError, match="no rows"):
        P.take(np.array([], dtype=int))
