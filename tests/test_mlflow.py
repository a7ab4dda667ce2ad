"""MLflow: a run folder logged as a run, its model as a pickle-free pyfunc that predicts as
the saved ensemble does."""

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

mlflow = pytest.importorskip("mlflow")

from ensemblex.ensemble import Ensemble  # noqa: E402
from ensemblex.experiment import run_experiment  # noqa: E402
from ensemblex.mlflow import log_run, save_model  # noqa: E402
from ensemblex.runs import RunFolder  # noqa: E402

TARGET = "Exited"


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """A throwaway tracking store and artifact folder (MLflow writes ``./mlruns`` in the
    working directory unless an experiment names another artifact location)."""
    root = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as env:
        if importlib.util.find_spec("sqlalchemy") and importlib.util.find_spec("alembic"):
            uri = f"sqlite:///{root / 'mlflow.db'}"
        else:  # mlflow-skinny has no database backend; its file store must be opted into
            env.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (root / "store").as_uri()
        env.setenv("MLFLOW_TRACKING_URI", uri)
        experiment = mlflow.create_experiment(
            "ensemblex-tests", artifact_location=(root / "artifacts").as_uri()
        )
        env.setenv("MLFLOW_EXPERIMENT_ID", experiment)
        yield root


@pytest.fixture(scope="module")
def tiny_run(churn_table, tmp_path_factory):
    """A run of two quick scikit-learn members (saved through skops) on 300 churn rows."""
    frame = churn_table.head(300)
    members = [
        ("linear", LogisticRegression(max_iter=500)),
        ("tree", DecisionTreeClassifier(max_depth=3, random_state=0)),
    ]
    out = tmp_path_factory.mktemp("run") / "run"
    run_experiment(frame, TARGET, out, members=members, folds=2, n_jobs=1)
    return out, churn_table.iloc[1000:1040].drop(columns=TARGET)


def test_log_run_logs_the_runs_scores_report_and_a_pickle_free_model(tracking, tiny_run):
    run_dir, X_new = tiny_run
    summary = RunFolder(run_dir).summary
    run_id = log_run(run_dir, run_name="tiny")

    logged = mlflow.get_run(run_id)
    params, metrics = logged.data.params, logged.data.metrics
    assert logged.info.run_name == "tiny"
    assert params["task"] == "binary" and params["target"] == TARGET
    assert params["metric"] == summary["metric"] and params["chosen"] == summary["chosen"]
    assert params["folds"] == "2" and params["rows_train"] == "240"
    assert params["members"] == "linear, tree"
    rows = {r["model"]: r for r in summary["leaderboard"]}
    assert metrics["cv_score"] == pytest.approx(rows[summary["chosen"]]["cv_score"])
    assert metrics["test_score"] == pytest.approx(rows[summary["chosen"]]["test_score"])
    for name, row in rows.items():
        assert metrics[f"cv_score.{name}"] == pytest.approx(row["cv_score"])
    best = min((r for r in rows.values() if r["kind"] == "member"), key=lambda r: r["cv_score"])
    assert metrics["best_member.test_score"] == pytest.approx(best["test_score"])
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id)}
    assert {"report.html", "leaderboard.json"} <= artifacts

    uri = f"runs:/{run_id}/model"
    local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tracking / "download")))
    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    assert not [f for f in files if f.endswith((".pkl", ".pickle"))], files
    assert "data/model/manifest.json" in files
    assert "loader_module: ensemblex.mlflow" in (local / "MLmodel").read_text()

    pyfunc = mlflow.pyfunc.load_model(uri)
    expected = Ensemble.load(RunFolder(run_dir).model_dir).prediction_frame(X_new)
    pd.testing.assert_frame_equal(pyfunc.predict(X_new), expected)
    assert isinstance(pyfunc.get_raw_model(), Ensemble)

    # features required, ID-like columns the model dropped optional; outputs as predicted
    inputs = {c.name: c for c in pyfunc.metadata.signature.inputs.inputs}
    assert (
        list(inputs)
        == summary["columns"]["numeric"]
        + summary["columns"]["categorical"]
        + (summary["dropped_columns"])
    )
    assert inputs["Geography"].type.name == "string" and inputs["Geography"].required
    assert inputs["Balance"].type.name == "double" and not inputs["Surname"].required
    assert pyfunc.metadata.signature.outputs.input_names() == list(expected.columns)


def test_a_saved_mlflow_model_is_verified_when_loaded(tiny_run, tmp_path):
    run_dir, X_new = tiny_run
    path = save_model(run_dir, tmp_path / "mlflow-model")
    assert (path / "data" / "model" / "manifest.json").is_file()
    assert "ensemblex==" in (path / "requirements.txt").read_text()
    expected = RunFolder(run_dir).load_model().prediction_frame(X_new)
    pd.testing.assert_frame_equal(mlflow.pyfunc.load_model(str(path)).predict(X_new), expected)

    with pytest.raises(ValueError, match="already exists"):
        save_model(run_dir, path)
    # a changed file in the logged copy is refused, as for the run's own model folder
    (path / "data" / "model" / "combiner" / "stray.txt").write_text("not listed")
    with pytest.raises(ValueError, match="not listed in the manifest"):
        mlflow.pyfunc.load_model(str(path))


def test_a_folder_that_is_not_a_run_is_refused_by_name(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: no leaderboard.json"):
        log_run(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"missing: not a folder"):
        log_run(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"empty: neither a run folder"):
        save_model(tmp_path / "empty", tmp_path / "out")


def test_without_mlflow_the_error_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'ensemblex\[mlflow\]'"):
        log_run(tmp_path)
