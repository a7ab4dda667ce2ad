import numpy as np
import pytest

from ensemblex import Predictions
from ensemblex.predictions import as_predictions


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
