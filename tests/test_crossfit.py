"""Cross-fitting: out-of-fold predictions equal a brute-force loop; resumes skip done folds."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold

from ensemblex.crossfit import crossfit, make_splits
from ensemblex.members import member
from ensemblex.preprocessing import infer_schema, make_preprocessor
from ensemblex.store import RunStore


def _brute_force(estimator, encoding, X, y, schema, splits, method):
    """Each fold: encode and fit on the training rows with scikit-learn, predict held-out."""
    out = None
    for train, valid in splits:
        pre = make_preprocessor(schema, encoding)
        model = clone(estimator).fit(pre.fit_transform(X.iloc[train]), y[train])
        pred = getattr(model, method)(pre.transform(X.iloc[valid])).reshape(len(valid), -1)
        out = np.zeros((len(y), pred.shape[1])) if out is None else out
        out[valid] = pred
    return out


@pytest.fixture(scope="module")
def churn(churn_table):
    frame = churn_table.head(500)
    return frame.drop(columns="Exited"), frame["Exited"].to_numpy()


def test_classification_oof_equals_a_brute_force_loop(churn, tmp_path):
    X, y = churn
    schema = infer_schema(X)
    splits = make_splits(y, "binary", 4, random_state=3)
    # the splits are scikit-learn's stratified, shuffled folds
    reference = StratifiedKFold(4, shuffle=True, random_state=3).split(X, y)
    for (train, valid), (train_ref, valid_ref) in zip(splits, reference):
        np.testing.assert_array_equal(train, train_ref)
        np.testing.assert_array_equal(valid, valid_ref)
    logreg = LogisticRegression(C=0.3, max_iter=1000)
    strong = LogisticRegression(C=30, max_iter=1000)
    members = [member("logreg", logreg), member("strong", strong)]
    calls = []
    P, seconds = crossfit(
        members,
        X,
        y,
        schema,
        "binary",
        splits,
        RunStore(tmp_path, {"run": 1}),
        classes=np.array([0, 1]),
        n_jobs=1,
        progress=lambda *a: calls.append(a),
    )
    assert list(P.members) == ["logreg", "strong"] and P.task == "binary"
    assert P.values.shape == (500, 2, 2)
    expected = _brute_force(logreg, "onehot", X, y, schema, splits, "predict_proba")
    np.testing.assert_allclose(P.member("logreg"), expected, rtol=0, atol=1e-12)
    assert np.abs(P.member("strong") - expected).max() > 1e-4
    # seconds per member: measured fit time and predict time per row, and costs from them
    assert set(seconds) == {"logreg", "strong"}
    for s in seconds.values():
        assert s["fit"] > 0 and 0 < s["predict_per_row"] < s["fit"]
    np.testing.assert_allclose(
        P.costs, [seconds[m]["predict_per_row"] * 4 for m in P.members], rtol=1e-12
    )
    assert calls[0] == ("resumed", 0, 8) and calls[-1][1:] == (8, 8) and len(calls) == 9


def test_regression_oof_equals_a_brute_force_loop(tmp_path):
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    splits = make_splits(y.to_numpy(), "regression", 3, random_state=0)
    first = next(KFold(3, shuffle=True, random_state=0).split(X))
    np.testing.assert_array_equal(splits[0][1], first[1])
    P, _ = crossfit(
        [member("ridge", Ridge(alpha=2.0))],
        X,
        y.to_numpy(),
        infer_schema(X),
        "regression",
        splits,
        RunStore(tmp_path, {"run": 1}),
        n_jobs=1,
    )
    expected = _brute_force(
        Ridge(alpha=2.0), "onehot", X, y.to_numpy(), infer_schema(X), splits, "predict"
    )
    np.testing.assert_allclose(P.values[:, 0, :], expected, rtol=0, atol=1e-9)


def _done_times(root):
    return {p: p.stat().st_mtime_ns for p in sorted(root.glob("folds/*/fold*/done.json"))}


def test_resume_skips_finished_folds_and_refits_only_missing_ones(churn, tmp_path):
    import shutil

    X, y = churn
    schema = infer_schema(X)
    splits = make_splits(y, "binary", 3, random_state=0)
    members = [member("logreg", LogisticRegression(max_iter=1000))]

    def run():
        calls = []
        P, _ = crossfit(
            members,
            X,
            y,
            schema,
            "binary",
            splits,
            RunStore(tmp_path, {"run": 1}),
            classes=np.array([0, 1]),
            n_jobs=1,
            progress=lambda *a: calls.append(a),
        )
        return P, calls

    first, _ = run()
    times = _done_times(tmp_path)
    assert len(times) == 3
    again, calls = run()
    assert calls == [("resumed", 3, 3)]  # nothing was fitted
    assert _done_times(tmp_path) == times
    np.testing.assert_array_equal(again.values, first.values)

    shutil.rmtree(tmp_path / "folds" / "logreg" / "fold1")
    redone, calls = run()
    assert calls == [("resumed", 2, 3), ("logreg/fold1", 3, 3)]
    now = _done_times(tmp_path)
    assert {p: t for p, t in now.items() if "fold1" not in str(p)} == {
        p: t for p, t in times.items() if "fold1" not in str(p)
    }
    np.testing.assert_allclose(redone.values, first.values, rtol=0, atol=1e-12)


def test_make_splits_errors():
    y = np.array([0] * 10 + [1] * 2)
    with pytest.raises(ValueError, match=r"class 'rare' has 2 rows; 3-fold cross-fitting needs"):
        make_splits(y, "binary", 3, 0, classes=["common", "rare"])
    with pytest.raises(ValueError, match="class 'code 1' has 2 rows"):
        make_splits(y, "binary", 3, 0)
    assert len(make_splits(y, "binary", 2, 0)) == 2
    with pytest.raises(ValueError, match=r"between 2 and the 12 rows, however: folds=1"):
        make_splits(y, "binary", 1, 0)
    with pytest.raises(ValueError, match="however: folds=13"):
        make_splits(np.arange(12.0), "regression", 13, 0)


def test_make_splits_names_a_numpy_class_plainly():
    classes, codes = np.unique(np.array(["common"] * 10 + ["rare"] * 2), return_inverse=True)
    with pytest.raises(ValueError, match=r"^class 'rare' has 2 rows"):
        make_splits(codes, "binary", 3, 0, classes=classes)
