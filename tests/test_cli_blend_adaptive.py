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


@pytest.fixture(scope="module")
def cancer_tables(tmp_path_factory):
    """OOF and test tables of three members on breast cancer, and the rows' features, all
    keyed by an id column (features in a shuffled order, to check the join)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict, train_test_split
    from sklearn.naive_bayes import GaussianNB
    from sklearn.tree import DecisionTreeClassifier

    folder = tmp_path_factory.mktemp("cancer")
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    ids = np.arange(len(y)) * 7 + 3
    tr, te = train_test_split(np.arange(len(y)), test_size=0.3, random_state=0, stratify=y)
    members = {
        "logreg": LogisticRegression(C=0.01, max_iter=3000),
        "bayes": GaussianNB(),
        "tree": DecisionTreeClassifier(max_depth=3, random_state=0),
    }
    oof = pd.DataFrame({"id": ids[tr], "label": y.iloc[tr].to_numpy()})
    test = pd.DataFrame({"id": ids[te], "label": y.iloc[te].to_numpy()})
    for name, est in members.items():
        oof[name] = cross_val_predict(est, X.iloc[tr], y.iloc[tr], cv=5, method="predict_proba")[
            :, 1
        ]
        test[name] = est.fit(X.iloc[tr], y.iloc[tr]).predict_proba(X.iloc[te])[:, 1]
    oof.to_csv(folder / "oof.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    features = X.assign(id=ids).sample(frac=1.0, random_state=0)
    features.to_csv(folder / "features.csv", index=False)
    return folder, X, tr, te


def test_blend_joins_features_by_id_for_dynamic_selection(cancer_tables, tmp_path):
    from ensemblex.combiners import KNORAU

    folder, X, tr, te = cancer_tables
    args = ["blend", str(folder / "oof.csv"), "--target", "label", "--id", "id", "--test"]
    args += [str(folder / "test.csv"), "--method", "knora_u", "--features"]
    args += [str(folder / "features.csv"), "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    # the same numbers as the library given the features row by row
    oof = read_table(folder / "oof.csv", target="label", id_col="id")
    test = read_table(folder / "test.csv", target="label", id_col="id")
    fitted = KNORAU().fit(oof.predictions, oof.y, X=X.iloc[tr].reset_index(drop=True))
    expected = fitted.predict(test.predictions, X=X.iloc[te].reset_index(drop=True))[:, 1]
    written = pd.read_csv(tmp_path / "predictions.csv")
    np.testing.assert_allclose(written["prediction"], expected, atol=1e-12)
    summary = json.loads((tmp_path / "blend.json").read_text())
    assert summary["method"] == "knora_u" and summary["features"].endswith("features.csv")


def test_blend_features_need_every_id_and_the_id_column(cancer_tables, tmp_path):
    folder = cancer_tables[0]
    partial = pd.read_csv(folder / "features.csv").iloc[10:]
    partial.to_csv(tmp_path / "partial.csv", index=False)
    base = ["blend", str(folder / "oof.csv"), "--target", "label", "--method", "knora_e"]
    result = runner.invoke(app, [*base, "--id", "id", "--features", str(tmp_path / "partial.csv")])
    assert result.exit_code == 2 and "no row with id" in result.output
    result = runner.invoke(app, [*base, "--features", str(folder / "features.csv")])
    assert result.exit_code == 2 and "--features needs --id" in result.output
    result = runner.invoke(app, [*base, "--id", "id", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "pass X (--features in the CLI)" in result.output
