import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split

from ensemblex import GreedySelection
from ensemblex.deep import TabMClassifier, TabMRegressor
from ensemblex.ensemble import EnsembleClassifier
from ensemblex.members import family_of, zoo
from ensemblex.members.torch import load_torch

# one thread: tiny networks gain nothing from more, and a busy machine loses a lot
TINY = {
    "k": 6,
    "n_blocks": 2,
    "d_block": 32,
    "max_epochs": 25,
    "patience": 5,
    "batch_size": 64,
    "n_threads": 1,
}


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    # a two-valued column goes to TabM's one-hot branch, the rest are quantile-normalised
    X = np.column_stack([X, (X[:, 0] > np.median(X[:, 0])).astype(float)])
    return train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)


@pytest.mark.parametrize("embeddings", [None, "piecewise"])
def test_classifier_heads_are_members_and_survive_save(cancer, tmp_path, embeddings):
    X_tr, X_te, y_tr, y_te = cancer
    model = TabMClassifier(num_embeddings=embeddings, **TINY).fit(X_tr, y_tr)
    heads = model.predict_members(X_te)
    assert heads.shape == (len(X_te), 6, 2)
    np.testing.assert_allclose(heads.sum(axis=2), 1.0, atol=1e-12)
    assert np.abs(heads[:, 0] - heads[:, 1]).max() > 1e-4  # heads differ
    np.testing.assert_allclose(model.predict_proba(X_te), heads.mean(axis=1))
    assert np.mean(model.predict(X_te) == y_te) > 0.9
    path = model.save(tmp_path / "tabm.safetensors")
    header = json.loads(path.read_bytes()[8 : 8 + int.from_bytes(path.read_bytes()[:8], "little")])
    assert json.loads(header["__metadata__"]["config"])["estimator"] == "TabMClassifier"
    loaded = TabMClassifier.load(path)
    np.testing.assert_array_equal(loaded.predict_members(X_te), heads)
    assert family_of(model) == "torch"
    np.testing.assert_array_equal(load_torch(path).predict_members(X_te), heads)
    with pytest.raises(ValueError, match="not a saved TabMRegressor"):
        TabMRegressor.load(path)


def test_regressor_learns_and_same_seed_same_numbers():
    X, y = load_diabetes(return_X_y=True)
    a = TabMRegressor(**TINY).fit(X[:300], y[:300])
    b = TabMRegressor(**TINY).fit(X[:300], y[:300])
    np.testing.assert_array_equal(a.predict(X[300:]), b.predict(X[300:]))
    assert r2_score(y[300:], a.predict(X[300:])) > 0.3
    assert a.predict_members(X[:4]).shape == (4, 6, 1)


def test_greedy_selection_prunes_heads(cancer):
    X_tr, X_te, y_tr, y_te = cancer
    model = TabMClassifier(**TINY | {"max_epochs": 10}).fit(X_tr, y_tr)
    rows = model.validation_rows_
    P = model.member_predictions(X_tr[rows])
    assert P.members == tuple(f"head{j}" for j in range(6))
    greedy = GreedySelection(n_iterations=3).fit(P, y_tr[rows])
    assert 1 <= (greedy.weights_ > 0).sum() <= 3
    pruned = greedy.predict(model.member_predictions(X_te))
    assert pruned.shape == (len(X_te), 2)
    assert np.mean(pruned.argmax(axis=1) == y_te) > 0.85


def test_bad_arguments_are_named():
    X, y = load_wine(return_X_y=True)
    with pytest.raises(ValueError, match="arch_type must be one of"):
        TabMClassifier(arch_type="big").fit(X, y)
    with pytest.raises(ValueError, match="num_embeddings must be None or 'piecewise'"):
        TabMClassifier(num_embeddings="periodic").fit(X, y)
    with pytest.raises(ValueError, match="X holds NaN"):
        TabMClassifier(**TINY).fit(np.where(X > 100, np.nan, X), y)
    model = TabMClassifier(**TINY | {"max_epochs": 1}).fit(X, y)
    with pytest.raises(ValueError, match="X must have 13 features"):
        model.predict(X[:, :5])


def test_tabm_heads_become_columns_of_a_crossfitted_ensemble(tmp_path):
    X, y = load_wine(return_X_y=True, as_frame=True)
    X = X.assign(region=np.where(X["alcohol"] > 13, "north", "south"))
    members = [
        ("tabm", TabMClassifier(**TINY | {"k": 3, "max_epochs": 8})),
        ("linear", zoo("fast", "multiclass")[2].estimator),
    ]
    model = EnsembleClassifier(members=members, cv=3, combiner="mean", n_jobs=1).fit(X, y)
    assert model.member_names_ == ["tabm.0", "tabm.1", "tabm.2", "linear"]
    assert model.oof_.values.shape == (len(X), 4, 3)
    assert set(model.leaderboard_["model"]) >= {"tabm.0", "tabm.2", "linear"}
    P = model.member_predictions(X.head(7))
    assert P.values.shape == (7, 4, 3)
    model.save(tmp_path / "saved")
    manifest = json.loads((tmp_path / "saved" / "manifest.json").read_text())
    assert manifest["members"][0]["columns"] == ["tabm.0", "tabm.1", "tabm.2"]
    fold = manifest["members"][0]["folds"][0]
    assert f"{fold}/model.safetensors" in manifest["files"]
    loaded = EnsembleClassifier.load(tmp_path / "saved")
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))
    assert isinstance(X, pd.DataFrame)
