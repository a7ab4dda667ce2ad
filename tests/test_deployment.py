"""What a fitted ensemble deploys: only the members its combiner uses, as fold models or
refit on all rows (``refit_full``), saved once (hard links into the run store)."""

import copy
import json
import os

import numpy as np
import pytest

from ensemblex.ensemble import EnsembleClassifier
from ensemblex.metrics import get_metric


@pytest.fixture(scope="module")
def churn_split(churn_table):
    X, y = churn_table.drop(columns="Exited"), churn_table["Exited"].to_numpy()
    return X[:1200], y[:1200], X[1200:], y[1200:]


def test_unused_members_are_neither_saved_nor_run(churn_split, tmp_path):
    X, y, X_new, _ = churn_split
    model = EnsembleClassifier(members="fast", combiner="best", cv=3, work_dir=tmp_path / "w")
    model.fit(X, y)
    best = model.member_names_[int(np.argmax(model.combiner_.weights_))]
    assert [m.name for m in model.fitted_members_] == [best]
    assert len(model.fold_members_) == 4  # all members stay scoreable after fit
    # the output is the one the combiner gives on every member's fold predictions
    every = model.crossfit_fold_predictions(X_new)
    np.testing.assert_allclose(
        model.predict_proba(X_new), model.combiner_.predict_folds(every), rtol=1e-12
    )
    saved = model.save(tmp_path / "m")
    manifest = json.loads((saved / "manifest.json").read_text())
    assert [m["name"] for m in manifest["members"]] == [best]
    assert manifest["member_columns"] == model.member_names_
    assert not any(
        f"members/{n}/" in f for f in manifest["files"] for n in model.member_names_ if n != best
    )
    loaded = EnsembleClassifier.load(saved)
    np.testing.assert_array_equal(loaded.predict_proba(X_new), model.predict_proba(X_new))
    with pytest.raises(ValueError, match="keeps only the models it deploys"):
        loaded.crossfit_fold_predictions(X_new)


def test_refit_full_deploys_one_model_per_member_fitted_on_all_rows(churn_split, tmp_path):
    X, y, X_new, y_new = churn_split
    work = tmp_path / "w"
    model = EnsembleClassifier(members="fast", cv=3, work_dir=work, refit_full=True).fit(X, y)
    used = model.combiner_.used_members()
    assert {m.name for m in model.fitted_members_} == set(np.asarray(model.member_names_)[used])
    for m in model.fitted_members_:
        assert len(m.folds) == 1 and m.sources == [work / "folds" / m.name / "full"]
        assert not (work / "folds" / m.name / "full" / "oof.npy").exists()
    assert set(model.refit_seconds_) == {m.name for m in model.fitted_members_}
    # a model refit on all rows is the member fitted on all rows: the linear one, exactly
    linear = next(m for m in model.fitted_members_ if m.name == "linear").folds[0]
    from ensemblex.members.base import FoldContext
    from ensemblex.members.zoo import zoo

    template = next(m for m in zoo("fast", "binary") if m.name == "linear")
    direct = template.fit(
        model.schema_.check(X, source="X"), y, FoldContext("binary", model.schema_, 2)
    )
    X_checked = model.schema_.check(X_new, source="X")
    np.testing.assert_allclose(linear.predict(X_checked), direct.predict(X_checked), rtol=1e-9)
    # it predicts through the same combiner; its score is close to the fold models'
    metric = get_metric("log_loss", "binary")
    refit = metric.score(y_new, model.predict_proba(X_new))
    every = model.crossfit_fold_predictions(X_new)
    folds = metric.score(
        y_new, model.combiner_.predict_folds(every, X=model.combiner_features(X_new))
    )
    assert abs(refit - folds) < 0.05
    saved = model.save(tmp_path / "m")
    loaded = EnsembleClassifier.load(saved)
    assert loaded.refit_full and all(len(m.folds) == 1 for m in loaded.fitted_members_)
    np.testing.assert_array_equal(loaded.predict_proba(X_new), model.predict_proba(X_new))
    # a second fit with the same store refits nothing
    stamps = {p: p.stat().st_mtime_ns for p in work.glob("folds/*/full/done.json")}
    EnsembleClassifier(members="fast", cv=3, work_dir=work, refit_full=True).fit(X, y)
    assert {p: p.stat().st_mtime_ns for p in work.glob("folds/*/full/done.json")} == stamps


def test_saved_models_share_the_run_stores_files(churn_split, tmp_path):
    X, y, X_new, _ = churn_split
    work = tmp_path / "w"
    model = EnsembleClassifier(members="fast", cv=3, combiner="mean", work_dir=work).fit(X, y)
    saved = model.save(tmp_path / "m")
    for name in model.member_names_:
        for k in range(3):
            for file in (saved / "members" / name / f"fold{k}").iterdir():
                stored = work / "folds" / name / f"fold{k}" / file.name
                assert os.path.samefile(file, stored), file
    # a store file changed in place (through a link, say) is not linked again: the model is
    # written from memory and loads
    stored = work / "folds" / "linear" / "fold0" / "model.skops"
    stored.write_bytes(stored.read_bytes() + b"\0")
    again = model.save(tmp_path / "m2")
    copy = again / "members" / "linear" / "fold0" / "model.skops"
    assert not os.path.samefile(copy, stored)
    np.testing.assert_array_equal(
        EnsembleClassifier.load(again).predict_proba(X_new), model.predict_proba(X_new)
    )


def test_members_with_one_encoding_load_one_preprocessor(churn_split, tmp_path):
    X, y, X_new, _ = churn_split
    model = EnsembleClassifier(members="fast", combiner="mean", cv=3, work_dir=tmp_path / "w")
    saved = model.fit(X, y).save(tmp_path / "m")
    loaded = EnsembleClassifier.load(saved)
    groups = {}
    for member in loaded.fitted_members_:
        for fold in member.folds:
            groups.setdefault(fold.preprocessor_key_, []).append(fold.preprocessor_)
    # linear and kNN, one-hot encoded on the same fold's rows: three pairs
    assert sorted(len(g) for g in groups.values()).count(2) == 3
    assert all(all(p is g[0] for p in g) for g in groups.values())
    np.testing.assert_array_equal(loaded.predict_proba(X_new), model.predict_proba(X_new))
    # the key is the content: equal for two saves of one object, whatever skops' ids
    from ensemblex.members.skops_io import dump_skops, skops_content_digest

    fold = loaded.fitted_members_[0].folds[0]
    dump_skops(fold.preprocessor_, tmp_path / "a.skops")
    dump_skops(copy.deepcopy(fold.preprocessor_), tmp_path / "b.skops")
    assert (tmp_path / "a.skops").read_bytes() != (tmp_path / "b.skops").read_bytes()
    assert skops_content_digest(tmp_path / "a.skops") == skops_content_digest(tmp_path / "b.skops")
    assert fold.preprocessor_key_ == "content:" + skops_content_digest(tmp_path / "a.skops")
    other = next(
        f
        for m in loaded.fitted_members_
        for f in m.folds
        if f.preprocessor_key_ != fold.preprocessor_key_
    )
    dump_skops(other.preprocessor_, tmp_path / "c.skops")
    assert skops_content_digest(tmp_path / "c.skops") != skops_content_digest(tmp_path / "a.skops")
    (tmp_path / "d.skops").write_bytes(b"not a zip")
    assert skops_content_digest(tmp_path / "d.skops") is None
    # skops reads a dict's keys by position: another order is another content
    dump_skops({1: None, "2": None}, tmp_path / "e.skops")
    dump_skops({2: None, "1": None}, tmp_path / "f.skops")
    assert skops_content_digest(tmp_path / "e.skops") != skops_content_digest(tmp_path / "f.skops")
