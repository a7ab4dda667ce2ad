import gc
import hashlib
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_wine
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.tree import DecisionTreeClassifier

from ensemblex.ensemble import EnsembleClassifier, EnsembleRegressor
from ensemblex.files import sha256_file


@pytest.fixture(scope="module")
def fitted_churn(churn_table, tmp_path_factory):
    X, y = churn_table.drop(columns="Exited"), churn_table["Exited"].to_numpy()
    work = tmp_path_factory.mktemp("work")
    model = EnsembleClassifier(members="fast", cv=3, work_dir=work).fit(X[:1200], y[:1200])
    return model, X[1200:]


def test_classifier_on_churn(fitted_churn):
    model, X_new = fitted_churn
    proba = model.predict_proba(X_new)
    assert proba.shape == (len(X_new), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(model.predict(X_new)) <= {0, 1}
    board = model.leaderboard_
    assert set(board.loc[board.kind == "member", "model"]) == {
        "lgbm",
        "random_forest",
        "linear",
        "knn",
    }
    assert (board.kind == "combiner (chosen)").sum() == 1
    assert model.schema_.dropped == ["RowNumber", "CustomerId", "Surname"]


def test_predictions_are_fold_consistent(fitted_churn):
    model, X_new = fitted_churn
    folds = model.member_fold_predictions(X_new)
    assert len(folds) == 3 and all(P.members == tuple(model.member_names_) for P in folds)
    # each fold holds that fold's models; their mean is the members' prediction
    lgbm = model.fitted_members_[0]
    X_checked = model.schema_.check(X_new, source="X")
    np.testing.assert_allclose(folds[1].values[:, :1], lgbm.folds[1].predict(X_checked))
    np.testing.assert_allclose(
        model.member_predictions(X_new).values,
        (folds[0].values + folds[1].values + folds[2].values) / 3,
        rtol=1e-12,
    )
    # the combiner sees each fold's predictions, as it saw OOF rows, and the outputs average
    features = model.combiner_features(X_new)  # for candidates that read them
    expected = sum(model.combiner_.predict(P, X=features) for P in folds) / 3
    np.testing.assert_allclose(model.predict_proba(X_new), expected, rtol=1e-12)


def test_saved_ensemble_moves_and_loads_without_unpickling(fitted_churn, tmp_path, monkeypatch):
    model, X_new = fitted_churn
    model.save(tmp_path / "a")
    shutil.move(tmp_path / "a", tmp_path / "moved")

    def no_unpickling(*args, **kwargs):
        raise AssertionError("loading must never unpickle")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    loaded = EnsembleClassifier.load(tmp_path / "moved")
    np.testing.assert_array_equal(loaded.predict_proba(X_new), model.predict_proba(X_new))
    manifest = json.loads((tmp_path / "moved" / "manifest.json").read_text())
    assert all(not p.startswith("/") for p in manifest["files"])
    assert manifest["versions"]["scikit-learn"]
    assert {m["family"] for m in manifest["members"]} == {"lightgbm", "sklearn"}


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_changed_foreign_and_malicious_files_are_refused(fitted_churn, tmp_path):
    import skops.io as sio

    model, _ = fitted_churn
    saved = model.save(tmp_path / "m")
    manifest_path = saved / "manifest.json"
    rel = next(
        p
        for p in json.loads(manifest_path.read_text())["files"]
        if p.endswith("preprocessor.skops")
    )
    # A pickle dropped beside the models is a file the manifest does not list.
    (saved / "members" / "evil.pkl").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(
        ValueError, match=r"files not listed in the manifest \['members/evil.pkl'\]"
    ):
        EnsembleClassifier.load(saved)
    (saved / "members" / "evil.pkl").unlink()
    # A changed model file fails its hash.
    original = (saved / rel).read_bytes()
    (saved / rel).write_bytes(original + b"\0")
    with pytest.raises(ValueError, match="was changed since it was saved"):
        EnsembleClassifier.load(saved)
    # An edited manifest fails its own digest.
    (saved / rel).write_bytes(original)
    manifest = json.loads(manifest_path.read_text())
    manifest["classes"] = manifest["classes"][::-1]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="does not match manifest.sha256"):
        EnsembleClassifier.load(saved)
    manifest["classes"] = manifest["classes"][::-1]
    # An attacker who also rewrites the manifest and its digest still cannot make skops run
    # foreign types.
    sio.dump({"payload": Evil()}, saved / rel)
    rewrite_manifest(saved, manifest, rel)
    with pytest.raises(ValueError, match="refuses to load untrusted types"):
        EnsembleClassifier.load(saved)
    # A raw pickle under a skops name is not a skops file.
    (saved / rel).write_bytes(pickle.dumps(Evil()))
    rewrite_manifest(saved, manifest, rel)
    with pytest.raises(ValueError, match="not a readable skops file"):
        EnsembleClassifier.load(saved)


def rewrite_manifest(saved, manifest, rel=None):
    """What an attacker who can write the folder does: relist a file, redo the digest."""
    if rel is not None:
        file = saved / rel
        member_json = file.parent / "member.json"
        if member_json.is_file() and file.name != "member.json":
            meta = json.loads(member_json.read_text())
            meta["files"][file.name] = sha256_file(file)
            member_json.write_text(json.dumps(meta))
            member_rel = str(Path(rel).parent / "member.json")
            manifest["files"][member_rel] = {
                "sha256": sha256_file(member_json),
                "size": member_json.stat().st_size,
            }
        manifest["files"][rel] = {"sha256": sha256_file(file), "size": file.stat().st_size}
    text = json.dumps(manifest)
    (saved / "manifest.json").write_text(text)
    digest = hashlib.sha256(text.encode()).hexdigest()
    (saved / "manifest.sha256").write_text(f"{digest}  manifest.json\n")


def test_paths_outside_the_folder_and_symlinks_are_refused(fitted_churn, tmp_path):
    model, _ = fitted_churn
    saved = model.save(tmp_path / "m")
    manifest = json.loads((saved / "manifest.json").read_text())
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    fold = manifest["members"][0]["folds"][0]
    for bad in ("../secret.txt", str(secret), "members/../../secret.txt"):
        edited = json.loads(json.dumps(manifest))
        edited["members"][0]["folds"][0] = bad
        edited["files"][bad] = {"sha256": sha256_file(secret), "size": secret.stat().st_size}
        rewrite_manifest(saved, edited)
        with pytest.raises(ValueError, match="not a relative path inside the folder"):
            EnsembleClassifier.load(saved)
    rewrite_manifest(saved, manifest)
    model_file = next((saved / fold).glob("model.*"))
    target = tmp_path / "outside_model"
    target.write_bytes(model_file.read_bytes())
    model_file.unlink()
    model_file.symlink_to(target)
    with pytest.raises(ValueError, match="is a symbolic link"):
        EnsembleClassifier.load(saved)


def test_saving_over_a_model_keeps_a_complete_model(fitted_churn, tmp_path):
    model, X_new = fitted_churn
    saved = model.save(tmp_path / "m")
    model.save(saved)  # replaced in place
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "m"]
    assert leftovers == []
    np.testing.assert_array_equal(
        EnsembleClassifier.load(saved).predict_proba(X_new), model.predict_proba(X_new)
    )


def test_regressor_and_multiclass_with_custom_members(tmp_path):
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    reg = EnsembleRegressor(members="fast", cv=3, combiner="greedy").fit(X, y)
    assert reg.predict(X.head(5)).shape == (5,)
    reg.save(tmp_path / "reg")
    np.testing.assert_allclose(EnsembleRegressor.load(tmp_path / "reg").predict(X), reg.predict(X))
    X, y = load_wine(return_X_y=True, as_frame=True)
    labels = np.array(["barolo", "grignolino", "barbera"])[y]
    members = [
        ("tree", DecisionTreeClassifier(max_depth=3, random_state=0)),
        ("logreg", LogisticRegression(max_iter=2000)),
    ]
    clf = EnsembleClassifier(members=members, cv=3).fit(X, labels)
    assert list(clf.classes_) == ["barbera", "barolo", "grignolino"]
    clf.save(tmp_path / "clf")
    loaded = EnsembleClassifier.load(tmp_path / "clf")
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X))
    with pytest.raises(ValueError, match="holds an EnsembleClassifier"):
        EnsembleRegressor.load(tmp_path / "clf")


def test_temporary_fold_folder_is_removed_with_the_estimator():
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    members = [("ridge", Ridge())]
    reg = EnsembleRegressor(members=members, cv=2, combiner="mean").fit(X, y)
    first = reg.work_dir_
    assert (first / "folds").is_dir()
    reg.fit(X, y)  # a refit replaces the folder
    second = reg.work_dir_
    assert not first.exists() and second.is_dir()
    del reg
    gc.collect()
    assert not second.exists()


def test_same_seed_same_numbers(churn_table):
    X, y = churn_table.drop(columns="Exited")[:600], churn_table["Exited"][:600].to_numpy()
    a = EnsembleClassifier(members="fast", cv=3, random_state=4).fit(X, y)
    b = EnsembleClassifier(members="fast", cv=3, random_state=4).fit(X, y)
    np.testing.assert_array_equal(a.oof_.values, b.oof_.values)
    pd.testing.assert_series_equal(a.leaderboard_["cv_score"], b.leaderboard_["cv_score"])
    # a constant would pass the above: another seed (other folds) gives other numbers
    c = EnsembleClassifier(members="fast", cv=3, random_state=5).fit(X, y)
    assert np.abs(c.oof_.values - a.oof_.values).max() > 1e-3
    assert not np.allclose(c.leaderboard_["cv_score"], a.leaderboard_["cv_score"])


def test_bad_input(churn_table, tmp_path):
    X, y = churn_table.drop(columns="Exited")[:300], churn_table["Exited"][:300].to_numpy()
    with pytest.raises(ValueError, match="single class"):
        EnsembleClassifier(members="fast").fit(X, np.zeros(300))
    with pytest.raises(ValueError, match="members must be one of"):
        EnsembleClassifier(members="huge").fit(X, y)
    with pytest.raises(ValueError, match="no manifest.json"):
        EnsembleClassifier.load(tmp_path)


def test_prefitted_members_are_used_as_they_are(churn_table, tmp_path):
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from ensemblex.members import prefitted

    X, y = churn_table.drop(columns="Exited"), churn_table["Exited"].to_numpy()
    # A model the user trained elsewhere (here: on rows the ensemble never sees).
    outside = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), ["Geography", "Gender"]),
            remainder="passthrough",
        ),
        DecisionTreeClassifier(max_depth=4, random_state=0),
    ).fit(X.iloc[1000:].drop(columns=["RowNumber", "CustomerId", "Surname"]), y[1000:])
    members = [prefitted("mine", outside), ("logreg", LogisticRegression(max_iter=2000))]
    model = EnsembleClassifier(members=members, cv=3).fit(X[:1000], y[:1000])
    features = X[:1000].drop(columns=["RowNumber", "CustomerId", "Surname"])
    np.testing.assert_allclose(model.oof_.member("mine"), outside.predict_proba(features))
    np.testing.assert_allclose(
        model.member_predictions(X[:5]).member("mine"), outside.predict_proba(features[:5])
    )
    model.save(tmp_path / "m")
    loaded = EnsembleClassifier.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict_proba(X[:50]), model.predict_proba(X[:50]))
    with pytest.raises(ValueError, match="prefitted member 'mine' predicts classes"):
        EnsembleClassifier(members=[prefitted("mine", outside)], cv=3).fit(
            X[:300], np.where(y[:300] == 1, "left", "stayed")
        )


def test_signed_models_refuse_unsigned_and_wrongly_signed(fitted_churn, tmp_path, monkeypatch):
    model, X_new = fitted_churn
    signed = model.save(tmp_path / "signed", key="s3cret")
    expected = model.predict_proba(X_new)
    np.testing.assert_array_equal(
        EnsembleClassifier.load(signed, key="s3cret").predict_proba(X_new), expected
    )
    with pytest.raises(ValueError, match="wrong signature"):
        EnsembleClassifier.load(signed, key="other")
    unsigned = model.save(tmp_path / "unsigned")
    with pytest.raises(ValueError, match="not signed"):
        EnsembleClassifier.load(unsigned, key="s3cret")
    # an attacker who edits the manifest and redoes its digest cannot redo the signature
    manifest = json.loads((signed / "manifest.json").read_text())
    manifest["classes"] = manifest["classes"][::-1]
    rewrite_manifest(signed, manifest)
    monkeypatch.setenv("ENSEMBLEX_SIGNING_KEY", "s3cret")
    with pytest.raises(ValueError, match="wrong signature"):
        EnsembleClassifier.load(signed)
    EnsembleClassifier.load(unsigned, key=b"")  # an empty key means no signature check
