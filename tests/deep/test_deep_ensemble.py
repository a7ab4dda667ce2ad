import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from torch import nn

from ensemblex import GreedySelection
from ensemblex.deep import BatchedMLP, DeepEnsembleClassifier, DeepEnsembleRegressor


def test_batched_mlp_equals_its_members_run_one_by_one():
    model = BatchedMLP(k=3, d_in=5, d_out=2, hidden=(8, 4), seed=1)
    x = torch.randn(7, 5)
    out = model(x)
    assert out.shape == (3, 7, 2)
    for j in range(3):
        plain = nn.Sequential(
            nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2)
        )
        with torch.no_grad():
            for layer, batched in zip(plain[::2], model.layers):
                layer.weight.copy_(batched.weight[j].T)
                layer.bias.copy_(batched.bias[j, 0])
        torch.testing.assert_close(out[j], plain(x), rtol=1e-5, atol=1e-5)
    # per-member inputs (each member its own batch) give the same numbers as a shared one
    torch.testing.assert_close(model(x.expand(3, -1, -1)), out, rtol=1e-5, atol=1e-5)
    # members start different
    assert not torch.allclose(model.layers[0].weight[0], model.layers[0].weight[1])


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return train_test_split(
        X, np.where(y == 1, "benign", "malignant"), test_size=0.3, random_state=0, stratify=y
    )


def test_classifier_learns_and_members_differ(cancer, tmp_path):
    X_tr, X_te, y_tr, y_te = cancer
    model = DeepEnsembleClassifier(
        n_members=4, hidden=(32,), max_epochs=40, patience=5, batch_size=64
    ).fit(X_tr, y_tr)
    members = model.predict_members(X_te)
    assert members.shape == (len(X_te), 4, 2)
    np.testing.assert_allclose(members.sum(axis=2), 1.0, atol=1e-6)
    assert np.abs(members[:, 0] - members[:, 1]).max() > 1e-3
    assert np.mean(model.predict(X_te) == y_te) > 0.93
    P = model.member_predictions(X_te)
    assert P.classes.tolist() == ["benign", "malignant"]
    assert GreedySelection().fit(P, y_te).weights_.sum() == pytest.approx(1.0)
    model.save(tmp_path / "deep")
    loaded = DeepEnsembleClassifier.load(tmp_path / "deep")
    np.testing.assert_array_equal(loaded.predict_members(X_te), members)
    with pytest.raises(ValueError, match="not a saved DeepEnsembleRegressor"):
        DeepEnsembleRegressor.load(tmp_path / "deep")


def test_same_seed_same_numbers(cancer):
    X_tr, X_te, y_tr, _ = cancer
    kw = dict(n_members=3, hidden=(16,), max_epochs=5, batch_size=64, random_state=7)
    a = DeepEnsembleClassifier(**kw).fit(X_tr, y_tr).predict_members(X_te)
    b = DeepEnsembleClassifier(**kw).fit(X_tr, y_tr).predict_members(X_te)
    np.testing.assert_array_equal(a, b)


def test_regressor():
    X, y = load_diabetes(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=0)
    model = DeepEnsembleRegressor(
        n_members=4, hidden=(32,), max_epochs=150, patience=15, batch_size=32, lr=3e-3
    ).fit(X_tr, y_tr)
    assert model.predict_members(X_te).shape == (len(X_te), 4, 1)
    assert r2_score(y_te, model.predict(X_te)) > 0.3


def test_bad_input(cancer):
    X_tr, _, y_tr, _ = cancer
    bad = X_tr.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        DeepEnsembleClassifier().fit(bad, y_tr)
    model = DeepEnsembleClassifier(n_members=2, hidden=(4,), max_epochs=1).fit(X_tr, y_tr)
    with pytest.raises(ValueError, match="X must have shape"):
        model.predict(X_tr[:, :3])


def test_divergence_is_a_clear_error_and_the_global_generator_is_untouched():
    X, y = load_diabetes(return_X_y=True)
    with pytest.raises(ValueError, match="no epoch reached a finite validation loss"):
        DeepEnsembleRegressor(n_members=2, hidden=(8,), lr=1e30, max_epochs=3).fit(X, y)
    with pytest.raises(ValueError, match="max_epochs must be >= 1"):
        DeepEnsembleRegressor(max_epochs=0).fit(X, y)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    DeepEnsembleRegressor(n_members=2, hidden=(8,), max_epochs=2, random_state=1).fit(X, y)
    torch.testing.assert_close(torch.rand(3), expected)
