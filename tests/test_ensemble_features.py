"""Ensembles whose combiner reads the rows' features: fit, predict, save, load, run."""

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.tree import DecisionTreeClassifier

from ensemblex.combiners import KNORAU, AutoCombiner, FuzzyRouting
from ensemblex.ensemble import Ensemble, EnsembleClassifier
from ensemblex.experiment import run_experiment
from ensemblex.runs import RunFolder

MEMBERS = [
    ("logreg", LogisticRegression(C=0.1, max_iter=2000)),
    ("tree", DecisionTreeClassifier(max_depth=4, random_state=0)),
    ("bayes", GaussianNB()),
]


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X, y.to_numpy()


@pytest.mark.parametrize("combiner", ["knora_u", "fuzzy_routing"])
def test_a_feature_combiner_sees_the_rows_features(cancer, combiner, tmp_path):
    X, y = cancer
    model = EnsembleClassifier(members=MEMBERS, cv=3, combiner=combiner, n_jobs=1).fit(X, y)
    assert isinstance(model.combiner_, KNORAU if combiner == "knora_u" else FuzzyRouting)
    # reference: the combiner refit by hand on the OOF rows and their features
    again = type(model.combiner_)().fit(model.oof_, y, X=X)
    rows = X.iloc[:60]
    expected = again.predict_folds(model.member_fold_predictions(rows), X=rows)
    np.testing.assert_allclose(model.predict_proba(rows), expected, atol=1e-12)
    model.save(tmp_path / "model")
    loaded = Ensemble.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict_proba(rows), model.predict_proba(rows))
    # the features matter: moving the rows moves the prediction, the members' outputs aside
    moved = rows.assign(**{c: rows[c] * 3 for c in rows.columns[:5]})
    assert loaded.combiner_features(moved) is not None


def test_auto_compares_feature_candidates_in_a_run(cancer, tmp_path):
    X, y = cancer
    auto = AutoCombiner(candidates=["mean", "knora_e", "stack_features"], cv=3)
    frame = X.assign(target=y)
    summary = run_experiment(
        frame, "target", tmp_path / "run", members=MEMBERS, folds=3, combiner=auto, n_jobs=1
    )
    names = {r["model"] for r in summary["leaderboard"] if r["kind"] != "member"}
    assert {"knora_e", "stack_features"} <= names
    # every combiner row has a test score, computed with the test rows' features
    assert all(
        np.isfinite(r["test_score"]) for r in summary["leaderboard"] if r["kind"] != "member"
    )
    run = RunFolder(tmp_path / "run")
    assert run.test_output.shape == (len(run.test.y), 2)
    assert summary["deployed"]["test_score"] == pytest.approx(
        -np.mean(
            np.log(run.test_output[np.arange(len(run.test.y)), (run.test.y == 1).astype(int)])
        ),
        rel=1e-9,
    )
    assert (tmp_path / "run" / "report.html").exists()
