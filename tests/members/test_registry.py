"""The registry: one line per family; a family written against the protocol alone works
everywhere (cross-fitting, the run store, the saved ensemble)."""

import json

import catboost as cb
import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import load_diabetes
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ensemblex.deep import DeepEnsembleClassifier, TabMRegressor
from ensemblex.ensemble import Ensemble, EnsembleRegressor
from ensemblex.members import (
    FAMILIES,
    Member,
    family_class,
    family_for,
    family_of,
    member,
    resolve_members,
)


def test_every_registered_family_loads_under_its_name():
    assert set(FAMILIES) >= {
        "sklearn",
        "lightgbm",
        "xgboost",
        "catboost",
        "torch",
        "prefitted",
        "tfidf_logistic",
    }
    for name in FAMILIES:
        cls = family_class(name)
        assert issubclass(cls, Member) and cls.family == name
    with pytest.raises(ValueError, match=r"unknown member family 'keras'; registered: \["):
        family_class("keras")


@pytest.mark.parametrize(
    ("estimator", "family"),
    [
        (Ridge(), "sklearn"),
        (RandomForestClassifier(), "sklearn"),
        (make_pipeline(StandardScaler(), lgb.LGBMClassifier()), "sklearn"),  # a pipeline
        (lgb.LGBMRegressor(), "lightgbm"),
        (xgb.XGBClassifier(), "xgboost"),
        (cb.CatBoostRegressor(), "catboost"),
        (DeepEnsembleClassifier(), "torch"),
        (TabMRegressor(), "torch"),
    ],
)
def test_estimators_find_their_family(estimator, family):
    assert family_of(estimator) == family
    assert family_for(estimator) is family_class(family)
    wrapped = member("m", estimator)
    assert wrapped.family == family and wrapped.estimator is estimator


def test_non_estimators_and_bad_member_lists():
    with pytest.raises(TypeError, match="str is not a member"):
        family_of("ridge")
    with pytest.raises(ValueError, match=r"duplicate names \['ridge'\]"):
        resolve_members([("ridge", Ridge()), ("ridge", Ridge(2.0))], "regression")
    with pytest.raises(ValueError, match="members is empty"):
        resolve_members([], "regression")
    names = [m.name for m in resolve_members([Ridge(), ("r2", Ridge(2.0))], "regression")]
    assert names == ["Ridge", "r2"]


# ---------------------------------------------------------------- a family in one module
class ShrunkMean(Member):
    """Predicts the training mean shrunk towards zero at two strengths: two columns."""

    family = "shrunk_mean"

    def __init__(self, name, strengths=(0.0, 0.5)):
        super().__init__(name)
        self.strengths = tuple(strengths)
        self.means_ = None

    def n_columns(self):
        return len(self.strengths)

    def fit(self, X, y, context):
        fitted = ShrunkMean(self.name, self.strengths)
        fitted.task = context.task
        fitted.means_ = np.array([(1 - s) * y.mean() for s in self.strengths])
        return fitted

    def predict(self, X):
        return np.broadcast_to(self.means_, (len(X), len(self.means_)))[:, :, None].astype(float)

    def save_files(self, folder):
        np.save(folder / "means.npy", self.means_, allow_pickle=False)
        return {"strengths": list(self.strengths)}

    @classmethod
    def load_files(cls, folder, name, task, settings):
        loaded = cls(name, settings["strengths"])
        loaded.means_ = np.load(folder / "means.npy", allow_pickle=False)
        return loaded


def test_a_new_family_is_one_class_and_one_registry_line(monkeypatch, tmp_path):
    monkeypatch.setitem(FAMILIES, "shrunk_mean", f"{__name__}:ShrunkMean")
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model = EnsembleRegressor(
        members=[ShrunkMean("shrunk"), ("ridge", Ridge())],
        cv=3,
        combiner="mean",
        n_jobs=1,
        work_dir=tmp_path / "work",
    ).fit(X, y)
    assert model.member_names_ == ["shrunk.0", "shrunk.1", "ridge"]
    # brute force: each fold's held-out rows get the mean of its training rows
    splits = KFold(3, shuffle=True, random_state=0).split(X)
    expected = np.zeros((len(y), 2))
    for train, valid in splits:
        expected[valid] = [y[train].mean(), 0.5 * y[train].mean()]
    np.testing.assert_allclose(model.oof_.values[:, :2, 0], expected, rtol=0, atol=1e-9)
    meta = json.loads((tmp_path / "work/folds/shrunk/fold0/member.json").read_text())
    assert meta["family"] == "shrunk_mean" and meta["columns"] == ["shrunk.0", "shrunk.1"]

    model.save(tmp_path / "saved")
    loaded = Ensemble.load(tmp_path / "saved")
    np.testing.assert_allclose(loaded.predict(X[:20]), model.predict(X[:20]), rtol=0, atol=1e-12)
    shrunk = loaded.member_predictions(X[:5]).values[:, :2, 0]
    np.testing.assert_allclose(shrunk[0], [y.mean(), 0.5 * y.mean()], rtol=1e-2)
