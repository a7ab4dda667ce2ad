"""`ensemblex blend` with label-free combiners (--unsupervised, --labels) and features."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ensemblex.cli import app
from ensemblex.cli.app import example_path
from ensemblex.combiners.labelfree import ConsensusWeighting, DawidSkene
from ensemblex.tables import read_table

runner = CliRunner()


@pytest.fixture(scope="module")
def churn_unlabelled(tmp_path_factory):
    """The bundled churn predictions with the OOF target column removed."""
    folder = tmp_path_factory.mktemp("unlabelled")
    oof = pd.read_csv(example_path("churn_oof.csv"))
    oof.drop(columns="Exited").to_csv(folder / "oof.csv", index=False)
    oof[["row", "Exited"]].iloc[::400].to_csv(folder / "labels.csv", index=False)
    return folder, oof


def test_unsupervised_blend_fits_without_the_target(churn_unlabelled, tmp_path):
    folder, _ = churn_unlabelled
    test = example_path("churn_test.csv")
    args = ["blend", str(folder / "oof.csv"), "--unsupervised", "--task", "binary"]
    # --target names the test rows' labels: they only score what was fitted without them
    args += ["--test", str(test), "--target", "Exited", "--id", "row", "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "blend.json").read_text())
    assert summary["unsupervised"] and summary["method"] == "consensus"
    assert summary["n_labels"] == 0
    # the same numbers as the library fitted without labels
    P = read_table(folder / "oof.csv", id_col="row", task="binary").predictions
    T = read_table(test, target="Exited", id_col="row", members=list(P.members), task="binary")
    expected = ConsensusWeighting().fit(P).predict(T.predictions)[:, 1]
    written = pd.read_csv(tmp_path / "predictions.csv")
    np.testing.assert_allclose(written["prediction"], expected, atol=1e-12)
    assert summary["test_score"] == pytest.approx(
        float(-np.mean(np.log(np.where(T.y == 1, expected, 1 - expected))))
    )
    assert "label-free combiner consensus" in result.output


def test_a_few_labels_reach_the_label_model(churn_unlabelled, tmp_path):
    folder, oof = churn_unlabelled
    args = ["blend", str(folder / "oof.csv"), "--unsupervised", "--task", "binary", "--id"]
    args += ["row", "--method", "dawid_skene", "--labels", str(folder / "labels.csv")]
    result = runner.invoke(app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "blend.json").read_text())
    assert summary["n_labels"] == len(oof.iloc[::400])
    P = read_table(folder / "oof.csv", id_col="row", task="binary").predictions
    y = np.full(P.n_samples, None, dtype=object)
    y[::400] = oof["Exited"].to_numpy()[::400]
    expected = DawidSkene().fit(P, y).predict(P)[:, 1]
    written = pd.read_csv(tmp_path / "predictions.csv")
    np.testing.assert_allclose(written["prediction"], expected, atol=1e-12)


def test_unsupervised_refuses_what_needs_labels(churn_unlabelled, tmp_path):
    folder, _ = churn_unlabelled
    base = ["blend", str(folder / "oof.csv"), "--unsupervised", "--task", "binary", "--id", "row"]
    result = runner.invoke(app, [*base, "--method", "greedy", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "label-free --method" in result.output
    labelled = example_path("churn_oof.csv")
    args = ["blend", str(labelled), "--target", "Exited", "--unsupervised", "--task", "binary"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 2 and "does not read the target column" in result.output
    args = ["blend", str(labelled), "--target", "Exited", "--labels", "x.csv"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--labels goes with --unsupervised" in result.output
