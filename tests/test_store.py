"""The run store: folds written all or nothing, verified by SHA-256, damaged ones refitted."""

import hashlib
import json
import logging

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from ensemblex.ensemble import EnsembleClassifier
from ensemblex.store import DamagedFold, RunStore, write_json_atomic


def _write(folder):
    np.save(folder / "oof.npy", np.arange(6.0).reshape(3, 1, 2), allow_pickle=False)
    (folder / "model.bin").write_bytes(b"weights")
    (folder / "sub").mkdir()
    (folder / "sub" / "extra.txt").write_text("more")
    return {"family": "test", "seconds": {"fit": 1.5, "predict_per_row": 0.01}}


def test_a_fold_is_written_whole_with_every_file_digest(tmp_path):
    store = RunStore(tmp_path, {"seed": 0})
    store.write_fold("m", 2, _write)
    folder = store.fold_dir("m", 2)
    assert folder == tmp_path / "folds" / "m" / "fold2"
    done = json.loads((folder / "done.json").read_text())
    assert done["member"] == "m" and done["fold"] == 2 and done["family"] == "test"
    assert done["seconds"] == {"fit": 1.5, "predict_per_row": 0.01}
    files = ["model.bin", "oof.npy", "sub/extra.txt"]
    assert sorted(done["sha256"]) == files
    for name in files:
        assert done["sha256"][name] == hashlib.sha256((folder / name).read_bytes()).hexdigest()
    assert store.is_done("m", 2) and not store.is_done("m", 0)
    oof, meta = store.read_fold("m", 2)
    np.testing.assert_array_equal(oof, np.arange(6.0).reshape(3, 1, 2))
    assert meta["seconds"]["fit"] == 1.5
    assert [p.name for p in (tmp_path / "folds" / "m").iterdir()] == ["fold2"]  # no temp left


def test_a_failing_write_leaves_nothing(tmp_path):
    store = RunStore(tmp_path, {"seed": 0})

    def broken(folder):
        _write(folder)
        raise RuntimeError("killed half-way")

    with pytest.raises(RuntimeError, match="killed half-way"):
        store.write_fold("m", 0, broken)
    assert list((tmp_path / "folds" / "m").iterdir()) == []  # no fold folder, no temp folder
    assert not store.is_done("m", 0)


@pytest.mark.parametrize(
    ("file", "change"),
    [
        ("oof.npy", lambda p: p.write_bytes(p.read_bytes()[:-8] + b"\0" * 8)),
        ("model.bin", lambda p: p.write_bytes(b"Weights")),
        ("sub/extra.txt", lambda p: p.unlink()),
        ("done.json", lambda p: p.write_text("{")),
    ],
)
def test_a_changed_file_makes_the_fold_unfinished_with_a_warning(tmp_path, caplog, file, change):
    store = RunStore(tmp_path, {"seed": 0})
    store.write_fold("m", 0, _write)
    change(store.fold_dir("m", 0) / file)
    with pytest.raises(DamagedFold, match=file):
        store.load_fold("m", 0) if file != "oof.npy" else store.read_fold("m", 0)
    with caplog.at_level(logging.WARNING, logger="ensemblex.store"):
        assert not store.is_done("m", 0)
    assert file in caplog.text and "it will be fitted again" in caplog.text
    assert not store.fold_dir("m", 0).exists()  # removed, to be refitted


def test_a_symlinked_file_is_damage(tmp_path):
    store = RunStore(tmp_path, {"seed": 0})
    store.write_fold("m", 0, _write)
    model = store.fold_dir("m", 0) / "model.bin"
    (tmp_path / "elsewhere").write_bytes(model.read_bytes())
    model.unlink()
    model.symlink_to(tmp_path / "elsewhere")
    assert not store.is_done("m", 0)


def test_another_runs_folder_is_refused(tmp_path, caplog):
    RunStore(tmp_path, {"seed": 0, "members": ["a"]})
    RunStore(tmp_path, {"seed": 0, "members": ["a"]})  # the same run resumes
    with pytest.raises(ValueError, match="holds folds of a different run"):
        RunStore(tmp_path, {"seed": 1, "members": ["a"]})
    (tmp_path / "run.json").write_text("not json")
    with caplog.at_level(logging.WARNING, logger="ensemblex.store"):
        RunStore(tmp_path, {"seed": 2})
    assert "unreadable, written anew" in caplog.text
    assert json.loads((tmp_path / "run.json").read_text()) == {"seed": 2}


def test_write_json_atomic_leaves_no_temp_file(tmp_path):
    write_json_atomic({"a": np.float64(1.5), "b": np.arange(2)}, tmp_path / "x.json")
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1.5, "b": [0, 1]}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
    with pytest.raises(TypeError, match="cannot write object as JSON"):
        write_json_atomic({"a": object()}, tmp_path / "y.json")
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


# ---------------------------------------------------------------- through the ensemble
def _fit(churn_table, work_dir, seed=0):
    X, y = churn_table.drop(columns="Exited")[:400], churn_table["Exited"][:400].to_numpy()
    members = [
        ("logreg", LogisticRegression(max_iter=1000)),
        ("forest", RandomForestClassifier(20, random_state=0)),
    ]
    return EnsembleClassifier(
        members=members, cv=3, combiner="mean", n_jobs=1, work_dir=work_dir, random_state=seed
    ).fit(X, y)


def _done_times(root):
    return {p: p.stat().st_mtime_ns for p in sorted(root.glob("folds/*/fold*/done.json"))}


def test_a_damaged_fold_is_refitted_to_the_same_numbers(churn_table, tmp_path, caplog):
    fresh = _fit(churn_table, tmp_path / "fresh")
    work = tmp_path / "work"
    _fit(churn_table, work)
    times = _done_times(work)
    model = work / "folds" / "forest" / "fold1" / "model.skops"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="ensemblex.store"):
        rerun = _fit(churn_table, work)
    assert "forest/fold1: model.skops was changed since it was written" in caplog.text
    now = _done_times(work)
    changed = [p for p in times if now[p] != times[p]]
    assert [p.parent.name for p in changed] == ["fold1"] and changed[0].parent.parent.name == (
        "forest"
    )
    np.testing.assert_array_equal(rerun.oof_.values, fresh.oof_.values)
    X = churn_table.drop(columns="Exited")[400:450]
    np.testing.assert_array_equal(rerun.predict_proba(X), fresh.predict_proba(X))


def test_a_work_dir_of_another_run_is_refused(churn_table, tmp_path):
    _fit(churn_table, tmp_path / "work")
    with pytest.raises(ValueError, match="holds folds of a different run"):
        _fit(churn_table, tmp_path / "work", seed=1)
