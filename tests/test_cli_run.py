import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss
from typer.testing import CliRunner

from ensemblex.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def churn_csv(churn_table, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "churn.csv"
    churn_table.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def finished_run(churn_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    args = [
        "run",
        str(churn_csv),
        "--target",
        "Exited",
        "--zoo",
        "fast",
        "--folds",
        "3",
        "--out",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_run_writes_the_run_folder(finished_run):
    out, output = finished_run
    assert "Leaderboard" in output and "random_forest" in output
    summary = json.loads((out / "leaderboard.json").read_text())
    kinds = {row["kind"] for row in summary["leaderboard"]}
    assert kinds == {"member", "combiner", "combiner (chosen)"}
    assert all(row["test_score"] is not None for row in summary["leaderboard"])
    # accuracy beside the primary metric, as the chosen ensemble's deployed line reports it
    test = pd.read_parquet(out / "test.parquet")
    hits = {
        m: float(np.mean((test[m].to_numpy() > 0.5) == (test["Exited"].to_numpy() == 1)))
        for m in ("lgbm", "random_forest", "linear", "knn")
    }
    board = {row["model"]: row for row in summary["leaderboard"]}
    for member, accuracy in hits.items():
        assert board[member]["test_accuracy"] == pytest.approx(accuracy)
    chosen = board[summary["chosen"]]
    assert chosen["test_accuracy"] == pytest.approx(summary["deployed"]["test_accuracy"])
    oof = pd.read_parquet(out / "oof.parquet")
    test = pd.read_parquet(out / "test.parquet")
    assert list(oof.columns) == ["Exited", "lgbm", "random_forest", "linear", "knn"]
    assert len(oof) + len(test) == 1500
    assert (out / "model" / "manifest.json").is_file()


def _blend(oof, test, out, method="auto"):
    args = ["blend", str(oof), "--target", "Exited", "--folds", "3", "--seed", "0"]
    args += ["--method", method]
    for table in test:
        args += ["--test", str(table)]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "blend.json").read_text())


def test_run_tables_feed_blend(finished_run, tmp_path):
    out, _ = finished_run
    # the per-fold test table: blend combines fold by fold, as the run's model predicts
    blend = _blend(out / "oof.parquet", [out / "test_folds.parquet"], tmp_path / "by_fold")
    run = json.loads((out / "leaderboard.json").read_text())
    board = {row["model"]: row for row in run["leaderboard"]}
    # the same OOF rows, folds and seed as the run: the same nested scores for every candidate
    # that reads only the predictions (the run also had the features, blend has not here;
    # the second level weighs all candidates, so it differs)
    combiners = {name for name, row in board.items() if row["kind"] != "member"}
    static = combiners - {"stack_features_lgbm", "ensemble"}
    assert static and set(blend["nested_cv_scores"]) == static | {"ensemble"}
    for name in static:
        assert blend["nested_cv_scores"][name] == pytest.approx(board[name]["cv_score"], rel=1e-9)
    # fold-consistent blending of one method gives the run's test score for it
    greedy = _blend(out / "oof.parquet", [out / "test_folds.parquet"], tmp_path / "g", "greedy")
    assert greedy["test_score"] == pytest.approx(board["greedy"]["test_score"], rel=1e-9)
    assert blend["test_folds"] == 3
    # the same folds given as three files: the same predictions
    folds = pd.read_parquet(out / "test_folds.parquet")
    assert sorted(folds["fold"].unique()) == [0, 1, 2]
    paths = []
    for k, part in folds.groupby("fold"):
        paths.append(tmp_path / f"fold{k}.csv")
        part.drop(columns="fold").to_csv(paths[-1], index=False)
    by_file = _blend(out / "oof.parquet", paths, tmp_path / "by_file")
    assert by_file["test_score"] == pytest.approx(blend["test_score"], rel=1e-9)
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "by_fold" / "predictions.csv"),
        pd.read_csv(tmp_path / "by_file" / "predictions.csv"),
    )
    # the averaged test table still blends; each fold's mean is what it holds
    averaged = _blend(out / "oof.parquet", [out / "test.parquet"], tmp_path / "averaged")
    assert averaged["test_folds"] == 1 and averaged["method"] == blend["method"]
    test = pd.read_parquet(out / "test.parquet")
    members = ["lgbm", "random_forest", "linear", "knn"]
    fold_mean = folds.groupby(folds.index % len(test))[members].mean()
    np.testing.assert_allclose(fold_mean.to_numpy(), test[members].to_numpy(), rtol=1e-12)
    # and against scikit-learn on the run's tables
    oof = pd.read_parquet(out / "oof.parquet")
    test = pd.read_parquet(out / "test.parquet")
    members = ["lgbm", "random_forest", "linear", "knn"]
    oof_loss = {m: log_loss(oof["Exited"], oof[m], labels=[0, 1]) for m in members}
    best = min(oof_loss, key=oof_loss.get)
    assert blend["best_single_member"] == best
    assert blend["best_single_test_score"] == pytest.approx(
        log_loss(test["Exited"], test[best], labels=[0, 1]), rel=1e-9
    )
    predictions = pd.read_csv(tmp_path / "by_fold" / "predictions.csv")["prediction"]
    assert len(predictions) == len(test)
    assert blend["test_score"] == pytest.approx(
        log_loss(test["Exited"], predictions, labels=[0, 1]), rel=1e-9
    )


def test_predict_new_rows_and_check_their_schema(finished_run, churn_table, tmp_path):
    out, _ = finished_run
    new = churn_table.tail(50)
    new.to_csv(tmp_path / "new.csv", index=False)
    result = runner.invoke(
        app, ["predict", str(out), str(tmp_path / "new.csv"), "--out", str(tmp_path / "pred.csv")]
    )
    assert result.exit_code == 0, result.output
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert list(pred.columns) == ["prediction", "proba_0", "proba_1"] and len(pred) == 50
    cases = {
        "missing": (new.drop(columns="Age"), "missing columns ['Age']"),
        "extra": (new.assign(Favourite="blue"), "unexpected columns ['Favourite']"),
        "dtype": (new.assign(Balance="lots"), "column 'Balance' has dtype"),
    }
    for name, (frame, message) in cases.items():
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        result = runner.invoke(
            app,
            [
                "predict",
                str(out),
                str(tmp_path / f"{name}.csv"),
                "--out",
                str(tmp_path / f"{name}_pred.csv"),
            ],
        )
        assert result.exit_code == 2, (name, result.output)
        assert message in " ".join(result.output.split()), (name, result.output)
        assert f"{name}.csv" in result.output
        assert not (tmp_path / f"{name}_pred.csv").exists()


def test_predict_copies_an_id_column_first(finished_run, churn_table, tmp_path):
    """--id: a column of the input first in the output, whether the model dropped it as
    ID-like (CustomerId), uses it as a feature (Age), or never saw it (a new key)."""
    out, _ = finished_run
    new = churn_table.tail(30).drop(columns="Exited")
    plain = tmp_path / "plain.csv"
    result = runner.invoke(app, ["predict", str(out), _csv(new, tmp_path), "--out", str(plain)])
    assert result.exit_code == 0, result.output
    expected = pd.read_csv(plain)
    keyed = new.assign(order_key=[f"k{i}" for i in range(len(new))])
    for frame, column in ((new, "CustomerId"), (new, "Age"), (keyed, "order_key")):
        path = tmp_path / f"{column}.csv"
        args = ["predict", str(out), _csv(frame, tmp_path), "--id", column, "--out", str(path)]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (column, result.output)
        pred = pd.read_csv(path)
        assert list(pred.columns) == [column, "prediction", "proba_0", "proba_1"]
        assert pred[column].tolist() == frame[column].tolist()
        pd.testing.assert_frame_equal(pred.drop(columns=column), expected)
    bad = tmp_path / "bad.csv"
    args = ["predict", str(out), _csv(new, tmp_path), "--id", "Nope", "--out", str(bad)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "unknown id column 'Nope'" in " ".join(result.output.split())
    assert not bad.exists()


def _csv(frame, folder) -> str:
    path = folder / "rows.csv"
    frame.to_csv(path, index=False)
    return str(path)


def test_run_bad_input(churn_csv, tmp_path):
    result = runner.invoke(
        app, ["run", str(churn_csv), "--target", "nope", "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 2
    assert "unknown target column 'nope'" in " ".join(result.output.split())
    assert not (tmp_path / "x").exists()


def _done_folds(out):
    return sorted((out / "work" / "folds").glob("*/fold*/done.json"))


def test_killed_run_resumes_to_identical_output(churn_csv, tmp_path):
    """SIGKILL a run part-way, rerun it: same output as an uninterrupted run, and the
    folds finished before the kill are not refit."""

    def command(out):
        return [
            sys.executable,
            "-m",
            "ensemblex",
            "run",
            str(churn_csv),
            "--target",
            "Exited",
            "--zoo",
            "fast",
            "--folds",
            "5",
            "--jobs",
            "1",
            "--out",
            str(out),
        ]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        command(killed),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while len(_done_folds(killed)) < 6 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in _done_folds(killed)}
    assert 6 <= len(finished) < 20, "the run must be killed part-way"
    assert not (killed / "leaderboard.json").exists()

    subprocess.run(command(killed), check=True, capture_output=True)
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items()), "finished folds refit"
    assert len(_done_folds(killed)) == 20

    fresh = tmp_path / "fresh"
    subprocess.run(command(fresh), check=True, capture_output=True)
    for table in ("oof.parquet", "test.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(killed / table), pd.read_parquet(fresh / table)
        )
    boards = [
        pd.DataFrame(json.loads((d / "leaderboard.json").read_text())["leaderboard"])
        for d in (killed, fresh)
    ]
    for col in ("model", "kind", "cv_score", "test_score"):
        pd.testing.assert_series_equal(boards[0][col], boards[1][col])


@pytest.mark.parametrize("loader", ["diabetes", "wine"])
def test_run_regression_and_multiclass(loader, tmp_path):
    from sklearn import datasets

    frame = getattr(datasets, f"load_{loader}")(as_frame=True).frame
    frame.to_csv(tmp_path / "data.csv", index=False)
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "run",
            str(tmp_path / "data.csv"),
            "--target",
            "target",
            "--zoo",
            "fast",
            "--folds",
            "3",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "leaderboard.json").read_text())
    assert summary["task"] == ("regression" if loader == "diabetes" else "multiclass")
    assert summary["metric"] == ("rmse" if loader == "diabetes" else "log_loss")
    page = (out / "report.html").read_text()
    assert ("Reliability diagram" in page) == (loader == "wine")
    result = runner.invoke(
        app, ["predict", str(out), str(tmp_path / "data.csv"), "--out", str(tmp_path / "pred.csv")]
    )
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "pred.csv")) == len(frame)


def _messages(n, seed=0):
    """Generated messages: spam and ham words, filler, one word from the other class."""
    rng = np.random.default_rng(seed)
    words = {
        "spam": "win free prize cash claim offer urgent winner call bonus".split(),
        "ham": "see you lunch tomorrow meeting thanks friend home later dinner".split(),
    }
    filler = "the a to and of it is for on".split()
    labels = rng.choice(["spam", "ham"], size=n)
    texts = [
        " ".join(
            rng.permutation(
                [
                    *rng.choice(words[label], 3),
                    *rng.choice(filler, 3),
                    rng.choice(words["ham" if label == "spam" else "spam"]),
                ]
            )
        )
        for label in labels
    ]
    return pd.DataFrame({"message": texts, "label": labels})


def test_text_members_run_and_predict_end_to_end(tmp_path):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline

    from ensemblex.crossfit import make_splits
    from ensemblex.ensemble import Ensemble

    frame = _messages(150)
    frame.to_csv(tmp_path / "texts.csv", index=False)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "texts.csv"), "--target", "label", "--zoo", "none"]
    args += ["--member", "words=tfidf_logistic"]
    args += ["--member", "chars=tfidf_logistic:analyzer=char_wb", "--folds", "3", "--jobs", "1"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "leaderboard.json").read_text())
    assert summary["task"] == "binary" and summary["dropped_columns"] == ["message"]
    assert list(pd.read_parquet(out / "oof.parquet").columns) == ["label", "words", "chars"]
    assert {r["model"] for r in summary["leaderboard"] if r["kind"] == "member"} == {
        "words",
        "chars",
    }

    rows = _messages(40, seed=1)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    result = runner.invoke(
        app, ["predict", str(out), str(tmp_path / "rows.csv"), "--out", str(tmp_path / "p.csv")]
    )
    assert result.exit_code == 0, result.output
    predicted = pd.read_csv(tmp_path / "p.csv")
    model = Ensemble.load(out / "model")
    X_rows = rows.drop(columns="label")
    np.testing.assert_allclose(
        predicted[["proba_ham", "proba_spam"]].to_numpy(),
        model.predict_proba(X_rows),
        rtol=0,
        atol=1e-12,
    )
    assert (predicted["prediction"] == rows["label"]).mean() > 0.8

    # brute force: the "words" member is the mean of scikit-learn pipelines fitted on the
    # cross-fitting folds of the run's training split
    X, _, y, _ = train_test_split(
        frame[["message"]],
        frame["label"].to_numpy(),
        test_size=0.2,
        random_state=0,
        stratify=frame["label"],
    )
    codes = np.unique(y, return_inverse=True)[1]
    expected = np.zeros((len(rows), 2))
    for train, _ in make_splits(codes, "binary", 3, random_state=0):
        pipeline = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2),
            LogisticRegression(C=10.0, max_iter=2000),
        ).fit(X["message"].iloc[train], codes[train])
        expected += pipeline.predict_proba(rows["message"]) / 3
    np.testing.assert_allclose(
        model.member_predictions(X_rows).member("words"), expected, rtol=0, atol=1e-12
    )
