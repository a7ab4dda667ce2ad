"""Prefitted members: never refit, fed every raw column, saved under their model's family."""

import json

import joblib
import lightgbm as lgb
import numpy as np
import pytest
from sklearn.compose import make_column_transformer
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ensemblex.crossfit import crossfit, make_splits
from ensemblex.ensemble import EnsembleClassifier
from ensemblex.members import FoldContext, PrefittedMember, load_member, prefitted
from ensemblex.members.registry import family_class
from ensemblex.preprocessing import infer_schema
from ensemblex.store import RunStore


class Recorder:
    """A model trained elsewhere that records what it is given and refuses to be fit."""

    classes_ = np.array([0, 1])

    def __init__(self):
        self.seen = []

    def fit(self, X, y):
        raise AssertionError("a prefitted model must never be refit")

    def predict(self, X):
        return self.predict_proba(X).argmax(axis=1)

    def predict_proba(self, X):
        self.seen.append(X)
        p = 1.0 / (1.0 + np.exp(-(X["RowNumber"].to_numpy() % 7 - 3.0)))
        return np.stack([1 - p, p], axis=1)


@pytest.fixture(scope="module")
def churn(churn_table):
    X = churn_table.drop(columns="Exited")
    return X, churn_table["Exited"].to_numpy()


def _outside_model(X, y):
    """A pipeline trained on rows the ensemble never sees, reading an ID and a surname."""
    features = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["Geography", "Gender", "Surname"]),
        (StandardScaler(), ["Age", "Balance", "RowNumber"]),
    )
    return make_pipeline(features, LogisticRegression(max_iter=2000)).fit(X, y)


def test_the_model_gets_every_raw_column_ids_included(churn):
    X, y = churn
    model = Recorder()
    context = FoldContext("binary", infer_schema(X[:300]), 2)
    assert {"RowNumber", "Surname"} <= set(context.schema.dropped)
    fitted = prefitted("mine", model).fit(X[:300], y[:300], context)  # no fit call
    pred = fitted.predict(X[300:320])
    assert list(model.seen[-1].columns) == list(X.columns)
    assert model.seen[-1]["Surname"].tolist() == X["Surname"][300:320].tolist()
    np.testing.assert_allclose(pred[:, 0], model.predict_proba(X[300:320]), rtol=0, atol=0)


def test_never_refit_and_oof_are_its_own_predictions(churn, tmp_path):
    X, y = churn
    model = _outside_model(X.iloc[1000:], y[1000:])
    before = joblib.hash(model)
    X_in, y_in = X.iloc[:600].reset_index(drop=True), y[:600]
    splits = make_splits(y_in, "binary", 3, 0)
    store = RunStore(tmp_path / "work", {"run": 1})
    P, _ = crossfit(
        [prefitted("mine", model)],
        X_in,
        y_in,
        infer_schema(X_in),
        "binary",
        splits,
        store,
        classes=np.array([0, 1]),
        n_jobs=1,
    )
    assert joblib.hash(model) == before  # parameters unchanged
    np.testing.assert_allclose(P.member("mine"), model.predict_proba(X_in), rtol=0, atol=1e-12)
    # each fold is saved under the model's own family and loads back to the same numbers
    folder = store.fold_dir("mine", 0)
    meta = json.loads((folder / "member.json").read_text())
    assert meta["family"] == "sklearn" and meta["settings"] == {"encoding": "raw"}
    loaded = load_member(folder)
    assert loaded.family == "sklearn"
    np.testing.assert_allclose(
        loaded.predict(X.iloc[700:760])[:, 0],
        model.predict_proba(X.iloc[700:760]),
        rtol=0,
        atol=1e-12,
    )


def test_a_prefitted_lightgbm_model_is_saved_as_lightgbm(tmp_path):
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model = lgb.LGBMRegressor(n_estimators=20, verbose=-1, random_state=0).fit(X[300:], y[300:])
    before = model.booster_.model_to_string()
    fitted = prefitted("gbm", model).fit(
        X[:300], y[:300].to_numpy(), FoldContext("regression", infer_schema(X[:300]))
    )
    assert fitted.family == "lightgbm"
    folder = fitted.save(tmp_path / "gbm")
    assert (folder / "model.txt.gz").is_file()
    assert json.loads((folder / "member.json").read_text())["family"] == "lightgbm"
    loaded = load_member(folder)
    np.testing.assert_allclose(
        loaded.predict(X[:300])[:, 0, 0], model.predict(X[:300]), rtol=0, atol=1e-12
    )
    assert model.booster_.model_to_string() == before


def test_prefitted_in_an_ensemble_and_its_classes_checked(churn):
    X, y = churn
    model = _outside_model(X.iloc[1000:], y[1000:])
    ensemble = EnsembleClassifier(members=[prefitted("mine", model)], cv=2, n_jobs=1)
    ensemble.fit(X[:400], y[:400])
    np.testing.assert_allclose(
        ensemble.member_predictions(X[400:450]).member("mine"),
        model.predict_proba(X[400:450]),
        rtol=0,
        atol=1e-12,
    )
    wrong = r"prefitted member 'mine' predicts classes .*however y has classes"
    with pytest.raises(ValueError, match=wrong):
        EnsembleClassifier(members=[prefitted("mine", model)], cv=2, n_jobs=1).fit(
            X[:400], np.where(y[:400] == 1, "yes", "no")
        )


def test_bad_uses(tmp_path):
    with pytest.raises(TypeError, match="needs a predict method"):
        prefitted("nothing", object())
    member = PrefittedMember("mine", Recorder())
    with pytest.raises(ValueError, match="predicts once fitted"):
        member.predict(None)
    with pytest.raises(ValueError, match="saved under their model's family"):
        family_class("prefitted").load_files(tmp_path, "mine", "binary", {})


def test_the_classes_message_names_labels_plainly(churn):
    X, y = churn
    model = _outside_model(X.iloc[1000:], y[1000:])
    plain = r"predicts classes \[0, 1\], however y has classes \['no', 'yes'\]"
    with pytest.raises(ValueError, match=plain):
        EnsembleClassifier(members=[prefitted("mine", model)], cv=2, n_jobs=1).fit(
            X[:400], np.where(y[:400] == 1, "yes", "no")
        )
