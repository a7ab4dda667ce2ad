"""Multi-view members: each view's members see only its columns; saved and loaded intact."""

import json

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier
from typer.testing import CliRunner

from ensemblex.cli import app
from ensemblex.ensemble import Ensemble, EnsembleClassifier
from ensemblex.members.views import check_views, view_weights


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    cols = list(X.columns)
    return X, y.to_numpy(), {"mean": cols[:10], "worst": cols[20:]}


MEMBERS = [
    ("logreg", LogisticRegression(C=0.5, max_iter=2000)),
    ("tree", DecisionTreeClassifier(max_depth=3, random_state=0)),
]


def test_view_members_see_only_their_columns(cancer):
    X, y, views = cancer
    model = EnsembleClassifier(members=MEMBERS, cv=2, combiner="mean", views=views, n_jobs=1)
    model.fit(X, y)
    assert model.member_names_ == ["mean/logreg", "mean/tree", "worst/logreg", "worst/tree"]
    # reference: the same member fitted on the view's columns alone gives the same OOF column
    for view, cols in views.items():
        plain = EnsembleClassifier(members=MEMBERS, cv=2, combiner="mean", n_jobs=1)
        plain.fit(X[cols], y)
        for name in ("logreg", "tree"):
            np.testing.assert_allclose(
                model.oof_.member(f"{view}/{name}"), plain.oof_.member(name), atol=1e-12
            )
    # a view's members do not change when a column outside the view changes
    shuffled = X.copy()
    shuffled[views["worst"]] = shuffled[views["worst"]].to_numpy()[::-1]
    before = model.member_predictions(X.iloc[:40]).member("mean/logreg")
    after = model.member_predictions(shuffled.iloc[:40]).member("mean/logreg")
    np.testing.assert_array_equal(before, after)


def test_views_survive_save_and_load(cancer, tmp_path):
    X, y, views = cancer
    model = EnsembleClassifier(members=MEMBERS, cv=2, views=views, n_jobs=1).fit(X, y)
    model.save(tmp_path / "model")
    loaded = Ensemble.load(tmp_path / "model")
    np.testing.assert_array_equal(
        loaded.predict_proba(X.iloc[:50]), model.predict_proba(X.iloc[:50])
    )
    # the inner member's files are listed, so a damaged one is refused
    inner = next((tmp_path / "model" / "members").rglob("inner/member.json"))
    inner.write_text(inner.read_text().replace('"task"', '"task" '))
    with pytest.raises(ValueError, match="changed since it was saved"):
        Ensemble.load(tmp_path / "model")


def test_views_are_checked():
    with pytest.raises(ValueError, match="'nope'"):
        check_views({"a": ["x", "nope"]}, ["x", "y"])
    with pytest.raises(ValueError, match="view name"):
        check_views({"a/b": ["x"]}, ["x"])
    with pytest.raises(ValueError, match="at least one column"):
        check_views({"a": []}, ["x"])
    assert view_weights(["a/m", "a/n", "b/m"], [0.2, 0.3, 0.5]) == {"a": 0.5, "b": 0.5}


def test_run_with_views_reports_weight_per_view(cancer, tmp_path):
    X, y, views = cancer
    frame = X.assign(target=y)
    frame.to_csv(tmp_path / "cancer.csv", index=False)
    (tmp_path / "views.json").write_text(json.dumps(views))
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(tmp_path / "cancer.csv"),
            "--target",
            "target",
            "--zoo",
            "fast",
            "--folds",
            "2",
            "--views",
            str(tmp_path / "views.json"),
            "--out",
            str(tmp_path / "run"),
            "--jobs",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "leaderboard.json").read_text())
    assert summary["views"] == views
    members = [r["model"] for r in summary["leaderboard"] if r["kind"] == "member"]
    assert {m.split("/")[0] for m in members} == set(views)
    if summary["view_weights"] is not None:
        assert sum(summary["view_weights"].values()) == pytest.approx(1.0)
        assert "weight per view" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text('{"v": ["no such column"]}')
    result = CliRunner().invoke(
        app, ["run", str(tmp_path / "cancer.csv"), "--target", "target", "--views", str(bad)]
    )
    assert result.exit_code == 2 and "no such column" in result.output
