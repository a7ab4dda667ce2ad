"""A predefined hold-out instead of K folds: members fitted on fixed rows, the combiner on
their predictions of the others (the Planetoid protocol of graph benchmarks)."""

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import PredefinedSplit
from sklearn.tree import DecisionTreeClassifier

from ensemblex.crossfit import check_splits
from ensemblex.ensemble import EnsembleClassifier
from ensemblex.experiment import run_experiment, split_roles
from ensemblex.runs import RunFolder


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X.iloc[:, :8], y.to_numpy()


def test_members_fit_on_the_train_rows_and_the_combiner_on_the_held_out_ones(cancer):
    X, y = cancer
    fold = np.where(np.arange(len(y)) < 300, -1, 0)
    tree = DecisionTreeClassifier(max_depth=3, random_state=0)
    model = EnsembleClassifier(
        members=[("tree", tree), ("deep_tree", DecisionTreeClassifier(random_state=0))],
        cv=PredefinedSplit(fold),
        combiner="weighted",
    ).fit(X, y)
    # the tree is invariant to the members' scaling of numbers: its held-out predictions
    # are exactly those of the same tree fitted on the first 300 rows
    reference = tree.fit(X.iloc[:300], y[:300]).predict_proba(X.iloc[300:])
    assert model.oof_.values.shape == (len(y) - 300, 2, 2)
    np.testing.assert_allclose(model.oof_.values[:, 0], reference)
    np.testing.assert_array_equal(model.oof_labels_, y[300:])
    # one fold model per member, as fitted on the train rows
    assert [len(m.folds) for m in model.fold_members_] == [1, 1]
    np.testing.assert_allclose(
        model.member_predictions(X.iloc[300:]).values[:, 0], reference, atol=1e-12
    )


def test_splits_given_as_a_list_and_their_errors(cancer):
    X, y = cancer
    rows = np.arange(len(y))
    model = EnsembleClassifier(members="fast", cv=[(rows[:400], rows[400:])]).fit(X, y)
    assert len(model.oof_labels_) == len(y) - 400
    with pytest.raises(ValueError, match="validated twice or both trained and validated"):
        check_splits([(rows[:400], rows[399:])], len(y))
    with pytest.raises(ValueError, match=r"valid rows must lie in \[0, 10\)"):
        check_splits([(np.arange(5), np.arange(5, 11))], 10)
    with pytest.raises(ValueError, match="must be a number of folds, a splitter"):
        EnsembleClassifier(members="fast", cv="three").fit(X, y)


def test_split_roles_name_the_column_and_what_is_missing():
    frame = pd.DataFrame({"s": ["Train", "VALID ", "test", "unlabeled", None]})
    assert split_roles(frame, "s").tolist() == ["train", "val", "test", "", ""]
    with pytest.raises(ValueError, match="split column 's' must have train, val and test"):
        split_roles(frame.iloc[[0, 2]], "s")
    with pytest.raises(ValueError, match="unknown split column 'x'"):
        split_roles(frame, "x")


def test_a_run_on_a_split_column_scores_only_the_test_rows(cancer, tmp_path):
    X, y = cancer
    roles = np.array(["train"] * 250 + ["val"] * 150 + ["test"] * 100 + ["unlabeled"] * 69)
    frame = X.assign(target=np.where(roles == "unlabeled", np.nan, y), split=roles)
    summary = run_experiment(
        frame, "target", tmp_path / "run", members="fast", split_column="split"
    )
    assert summary["folds"] == "predefined"
    assert summary["rows"] == {"train": 400, "test": 100}
    assert summary["split"]["rows"] == {"train": 250, "val": 150, "test": 100, "other": 69}
    assert "split" not in summary["columns"]["numeric"]
    run = RunFolder(tmp_path / "run")
    assert len(run.oof.predictions.values) == 150  # the combiner's rows: the val rows only
    model = run.load_model()
    accuracy = np.mean(model.predict(X.iloc[400:500]) == y[400:500])
    chosen = next(r for r in summary["leaderboard"] if r["kind"] == "combiner (chosen)")
    assert accuracy == pytest.approx(summary["deployed"]["test_accuracy"])
    assert chosen["test_accuracy"] == pytest.approx(accuracy)
