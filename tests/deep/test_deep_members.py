"""Deep estimators as members of a cross-fitted ensemble (the ``deep`` zoo)."""

import json

import numpy as np
from sklearn.datasets import load_diabetes

from ensemblex.deep import DeepEnsembleRegressor, TabMClassifier
from ensemblex.ensemble import EnsembleRegressor
from ensemblex.members import family_of, zoo


def test_deep_zoo_adds_an_mlp_ensemble_and_tabm_as_many_columns():
    specs = zoo("deep", "binary", random_state=3)
    default = [s.name for s in zoo("default", "binary")]
    assert [s.name for s in specs] == [*default, "mlp_ensemble", "tabm"]
    mlps, tabm = specs[-2:]
    assert (mlps.family, tabm.family) == ("torch", "torch")
    assert (mlps.encoding, tabm.encoding) == ("onehot", "onehot")
    assert isinstance(tabm.estimator, TabMClassifier) and tabm.estimator.random_state == 3
    assert mlps.column_names() == [f"mlp_ensemble.{j}" for j in range(5)]
    assert len(tabm.column_names()) == 32
    assert tabm.thread_param == "n_threads"


def test_deep_ensemble_members_are_crossfitted_saved_and_loaded(tmp_path):
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    deep = DeepEnsembleRegressor(n_members=3, hidden=(16,), max_epochs=15, lr=1e-2, n_threads=1)
    assert family_of(deep) == "torch"
    model = EnsembleRegressor(members=[("mlps", deep)], cv=3, combiner="greedy", n_jobs=1)
    model.fit(X, y)
    assert model.member_names_ == ["mlps.0", "mlps.1", "mlps.2"]
    oof = model.oof_.values[:, :, 0]
    assert np.corrcoef(oof.mean(axis=1), y)[0, 1] > 0.5
    # the three columns are three different networks
    assert np.abs(oof[:, 0] - oof[:, 1]).max() > 1e-3
    model.save(tmp_path / "saved")
    manifest = json.loads((tmp_path / "saved" / "manifest.json").read_text())
    assert manifest["members"][0]["family"] == "torch"
    loaded = EnsembleRegressor.load(tmp_path / "saved")
    np.testing.assert_allclose(loaded.predict(X), model.predict(X))
