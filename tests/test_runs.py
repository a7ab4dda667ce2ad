"""RunFolder: the run folder's tables agree with the run's folds and its saved model."""

import json
import shutil

import numpy as np
import pytest
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split

from ensemblex.crossfit import make_splits
from ensemblex.experiment import run_experiment
from ensemblex.runs import RunFolder, model_dir

MEMBERS = ["lgbm", "random_forest", "linear", "knn"]


@pytest.fixture(scope="module")
def run(churn_table, tmp_path_factory):
    frame = churn_table.head(600)
    out = tmp_path_factory.mktemp("run") / "out"
    summary = run_experiment(frame, "Exited", out, members="fast", folds=2, n_jobs=1)
    X = frame.drop(columns="Exited")
    y = frame["Exited"].to_numpy()
    # the run's split, drawn again: a 20% stratified test split with seed 0
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=0, stratify=y
    )
    return out, summary, (X_train, X_test, y_train, y_test)


def test_summary(run):
    out, summary, (X_train, X_test, _, _) = run
    folder = RunFolder(out)
    assert folder.is_run() and folder.summary == json.loads(json.dumps(summary))
    assert {"target", "task", "metric", "greater_is_better", "chosen", "leaderboard"} <= set(
        summary
    )
    facts = (summary["target"], summary["task"], summary["metric"])
    assert facts == ("Exited", "binary", "log_loss")
    assert summary["rows"] == {"train": len(X_train), "test": len(X_test)}
    assert summary["dropped_columns"] == ["RowNumber", "CustomerId", "Surname"]
    board = {r["model"]: r for r in summary["leaderboard"]}
    assert [m for m in board if board[m]["kind"] == "member"] != []
    assert board[summary["chosen"]]["kind"] == "combiner (chosen)"
    assert folder.model_dir == out / "model" and model_dir(out) == out / "model"
    assert model_dir(out / "model") == out / "model"


def test_oof_table_is_the_folds_held_out_predictions(run):
    out, summary, (_, _, y_train, _) = run
    oof = RunFolder(out).oof
    assert list(oof.predictions.members) == MEMBERS
    np.testing.assert_array_equal(oof.y, y_train)
    splits = make_splits(y_train, "binary", 2, random_state=0)
    expected = np.zeros((len(y_train), len(MEMBERS)))
    for j, name in enumerate(MEMBERS):
        for k, (_, valid) in enumerate(splits):
            fold = np.load(out / "work" / "folds" / name / f"fold{k}" / "oof.npy")
            expected[valid, j] = fold[:, 0, 1]
    np.testing.assert_allclose(oof.predictions.values[:, :, 1], expected, rtol=0, atol=1e-12)
    board = {r["model"]: r for r in summary["leaderboard"]}
    for j, name in enumerate(MEMBERS):
        assert board[name]["cv_score"] == pytest.approx(
            log_loss(y_train, expected[:, j], labels=[0, 1]), rel=1e-6
        )


def test_test_table_is_the_saved_models_predictions(run):
    out, summary, (_, X_test, _, y_test) = run
    folder = RunFolder(out)
    test = folder.test
    np.testing.assert_array_equal(test.y, y_test)
    model = folder.load_model()
    P = model.member_predictions(X_test)
    assert list(P.members) == list(test.predictions.members) == MEMBERS
    # the saved model holds the members its combiner uses; the table has every member
    deployed = [c for m in model.fitted_members_ for c in m.columns]
    assert set(deployed) == set(np.asarray(MEMBERS)[model.combiner_.used_members()])
    for name in deployed:
        np.testing.assert_allclose(
            test.predictions.member(name), P.member(name), rtol=0, atol=1e-12
        )
    board = {r["model"]: r for r in summary["leaderboard"]}
    for name in MEMBERS:
        p = test.predictions.member(name)[:, 1]
        assert board[name]["test_score"] == pytest.approx(log_loss(y_test, p), rel=1e-6)


def test_member_costs(run):
    out, summary, _ = run
    costs = RunFolder(out).member_costs()
    board = {r["model"]: r for r in summary["leaderboard"]}
    np.testing.assert_array_equal(costs, [board[m]["predict_seconds_per_row"] for m in MEMBERS])
    assert (costs > 0).all() and (costs < 0.1).all()


def test_not_a_run_folder(run, tmp_path):
    out, _, _ = run
    with pytest.raises(ValueError, match="no leaderboard.json; not a folder written by"):
        _ = RunFolder(tmp_path).summary
    assert not RunFolder(tmp_path).is_run()
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("work", "model"))
    (copy / "leaderboard.json").write_text("{")
    with pytest.raises(ValueError, match="leaderboard.json: not readable JSON"):
        _ = RunFolder(copy).summary
    (copy / "leaderboard.json").write_text(json.dumps({"target": "Exited", "task": "binary"}))
    with pytest.raises(ValueError, match=r"missing entries \['metric', 'greater_is_better'"):
        _ = RunFolder(copy).summary
    summary = json.loads((out / "leaderboard.json").read_text())
    for row in summary["leaderboard"]:
        row.pop("predict_seconds_per_row", None)
    (copy / "leaderboard.json").write_text(json.dumps(summary))
    with pytest.raises(ValueError, match="records no predict time per member"):
        RunFolder(copy).member_costs()


def _edited(out, tmp_path, edit):
    copy = tmp_path / "edited"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("work", "model"))
    summary = json.loads((out / "leaderboard.json").read_text())
    edit(summary)
    (copy / "leaderboard.json").write_text(json.dumps(summary))
    return RunFolder(copy)


def _set_row(i, key, value):
    return lambda s: s["leaderboard"][i].__setitem__(key, value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.__setitem__("greater_is_better", "no"), "'greater_is_better' must be a bool"),
        (lambda s: s.__setitem__("leaderboard", {}), "'leaderboard' must be a list"),
        (lambda s: s.__setitem__("task", "survival"), "'task' must be one of"),
        (lambda s: s["leaderboard"][0].pop("model"), "leaderboard row 0 must hold 'model'"),
        (_set_row(1, "cv_score", "0.3"), "leaderboard row 1 must hold"),
        (_set_row(1, "cv_score", None), "leaderboard row 1 must hold"),
        (_set_row(0, "kind", "<b>"), "leaderboard row 0 must hold"),
        (lambda s: s.__setitem__("leaderboard", []), "lists no member"),
    ],
)
def test_a_malformed_summary_is_refused_naming_what_is_wrong(run, tmp_path, edit, message):
    out, _, _ = run
    with pytest.raises(ValueError, match=message):
        _ = _edited(out, tmp_path, edit).summary


def test_leaderboard_members_must_be_the_oof_tables(run, tmp_path):
    out, _, _ = run

    def rename(s):
        next(r for r in s["leaderboard"] if r["kind"] == "member")["model"] = "ghost"

    with pytest.raises(ValueError, match="lists members .*'ghost'.* however oof.parquet holds"):
        _ = _edited(out, tmp_path, rename).oof
