"""scikit-learn members: fit on a fold, predict like the estimator itself, save/load with skops."""

import json

import numpy as np
import pytest
import skops.io as sio
from member_cases import fold_context, tables
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge

from ensemblex.files import sha256_file
from ensemblex.members import load_member, member
from ensemblex.members.sklearn import SklearnMember
from ensemblex.preprocessing import make_preprocessor

# ---------------------------------------------------------------- data and reference


def _reference(estimator, encoding, context, X, y, X_test):
    """The estimator fitted by hand on the same encoding: ``(n, n_outputs)``."""
    pre = make_preprocessor(context.schema, encoding)
    model = clone(estimator).fit(pre.fit_transform(X), y)
    Z = pre.transform(X_test)
    out = model.predict(Z) if context.task == "regression" else model.predict_proba(Z)
    return np.asarray(out, dtype=float).reshape(len(Z), -1)


def _damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        start = len(data) // 3
        for i in range(start, min(start + 40, len(data))):
            data[i] ^= 0xFF
        path.write_bytes(bytes(data))


ESTIMATORS = {
    "regression": [
        ("ridge", Ridge(alpha=3.0), "onehot"),
        ("forest", RandomForestRegressor(20, random_state=0), "ordinal"),
    ],
    "binary": [
        ("logreg", LogisticRegression(C=0.5, max_iter=1000), "onehot"),
        ("forest", RandomForestClassifier(20, random_state=0), "ordinal"),
    ],
    "multiclass": [
        ("logreg", LogisticRegression(C=0.5, max_iter=1000), "onehot"),
        ("forest", RandomForestClassifier(20, random_state=0), "ordinal"),
    ],
}
CASES = [(task, *case) for task, cases in ESTIMATORS.items() for case in cases]


# ---------------------------------------------------------------- fit, predict, save, load
@pytest.mark.parametrize(("task", "name", "estimator", "encoding"), CASES)
def test_predicts_like_the_estimator_and_round_trips(
    task, name, estimator, encoding, churn_table, tmp_path
):
    X, y, X_test = tables(task, churn_table)
    context = fold_context(task, X, y)
    template = member(name, estimator)
    assert isinstance(template, SklearnMember) and template.encoding == encoding
    fitted = template.fit(X, y, context)
    assert template.model_ is None and template.task is None  # the template is left as it is
    n_outputs = 1 if task == "regression" else len(np.unique(y))
    pred = fitted.predict(X_test)
    assert pred.shape == (len(X_test), 1, n_outputs)
    expected = _reference(estimator, encoding, context, X, y, X_test)
    np.testing.assert_allclose(pred[:, 0, :], expected, rtol=0, atol=1e-12)

    folder = fitted.save(tmp_path / name)
    files = {p.name for p in folder.iterdir()}
    assert files == {"member.json", "model.skops", "preprocessor.skops"}
    meta = json.loads((folder / "member.json").read_text())
    assert meta == {
        "family": "sklearn",
        "name": name,
        "task": task,
        "columns": [name],
        "settings": {"encoding": encoding},
        "files": {p.name: sha256_file(p) for p in folder.iterdir() if p.name != "member.json"},
    }
    loaded = load_member(folder)
    assert type(loaded) is SklearnMember and loaded.task == task and loaded.encoding == encoding
    np.testing.assert_allclose(loaded.predict(X_test), pred, rtol=0, atol=1e-12)
    # the saved estimator is the one fitted: same coefficients / same trees' predictions
    assert type(loaded.model_) is type(estimator)


def test_tree_models_get_ordinal_codes_and_the_rest_one_hot(churn_table):
    X, y, _ = tables("binary", churn_table)
    context = fold_context("binary", X, y)
    forest = member("forest", RandomForestClassifier(5, random_state=0)).fit(X, y, context)
    linear = member("linear", LogisticRegression(max_iter=500)).fit(X, y, context)
    # churn: 8 numeric columns, Geography (3 values) and Gender (2 values); IDs dropped
    assert forest.preprocessor_.transform(X).shape[1] == 10
    assert linear.preprocessor_.transform(X).shape[1] == 8 + 3 + 2
    ordinal = forest.preprocessor_.transform(X)[:, -2:]
    assert set(np.unique(ordinal[:, 1])) == {0.0, 1.0}  # Gender as codes


def test_an_explicit_encoding_is_kept_and_a_bad_one_refused(churn_table):
    lr = LogisticRegression()
    assert member("lr", lr, "ordinal").encoding == "ordinal"
    with pytest.raises(ValueError, match=r"encoding must be one of .*however: encoding='hash'"):
        member("lr", lr, "hash")


@pytest.mark.parametrize("name", ["", "a/b", ".hidden", None])
def test_bad_member_names(name):
    with pytest.raises(ValueError, match="member name must be"):
        SklearnMember(name, Ridge())


def test_saving_an_unfitted_member_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not fitted"):
        member("ridge", Ridge()).save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_a_table_with_only_id_columns_is_refused(churn_table):
    X = churn_table.head(100)[["Surname", "RowNumber"]]
    y = churn_table.head(100)["Exited"].to_numpy()
    with pytest.raises(ValueError, match="no feature columns this member can read"):
        member("lr", LogisticRegression()).fit(X, y, fold_context("binary", X, y))


# ---------------------------------------------------------------- damaged folders
@pytest.fixture
def saved(churn_table, tmp_path):
    X, y, _ = tables("binary", churn_table)
    fitted = member("logreg", LogisticRegression(max_iter=500)).fit(
        X, y, fold_context("binary", X, y)
    )
    return fitted.save(tmp_path / "logreg")


@pytest.mark.parametrize("file", ["model.skops", "preprocessor.skops"])
@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_damaged_skops_file_is_a_value_error_naming_it(saved, file, how, damage_guard):
    folder = saved
    _damage(folder / file, how)
    guard, rehash = damage_guard
    if guard == "parser":
        rehash(folder)
    expected = (
        rf"{file}: not a readable skops file"
        if guard == "parser"
        else rf"{file}: damaged \(its SHA-256 differs"
    )
    with pytest.raises(ValueError, match=expected):
        load_member(folder)


def test_damaged_or_inconsistent_member_json(saved):
    folder = saved
    meta_file = folder / "member.json"
    meta = json.loads(meta_file.read_text())
    _damage(meta_file, "truncate")
    with pytest.raises(ValueError, match="member.json: not a readable member description"):
        load_member(folder)
    meta_file.write_text(json.dumps({**meta, "columns": ["logreg.0", "logreg.1"]}))
    with pytest.raises(ValueError, match=r"lists columns \['logreg.0', 'logreg.1'\]"):
        load_member(folder)
    meta_file.write_text(json.dumps({**meta, "family": "pickle"}))
    with pytest.raises(ValueError, match="unknown member family 'pickle'"):
        load_member(folder)
    meta_file.write_text(json.dumps({k: v for k, v in meta.items() if k != "task"}))
    with pytest.raises(ValueError, match="member.json: not a readable member description"):
        load_member(folder)


class Untrusted(ClassifierMixin, BaseEstimator):
    """A type outside skops' defaults and the allowlist."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        return np.full((len(X), len(self.classes_)), 1.0 / len(self.classes_))


def test_untrusted_types_in_a_skops_file_are_refused(saved, rehash):
    sio.dump(Untrusted().fit(np.zeros((4, 1)), [0, 1, 0, 1]), saved / "model.skops")
    # a tamperer rewrites the digests too: the skops allowlist must still refuse
    rehash(saved)
    refused = r"model.skops: refuses to load untrusted types \[.*Untrusted"
    with pytest.raises(ValueError, match=refused):
        load_member(saved)


@pytest.mark.parametrize(
    "estimator",
    [
        RandomForestClassifier(40, min_samples_leaf=3, random_state=0),
        ExtraTreesClassifier(30, random_state=0),
        RandomForestRegressor(40, random_state=0),
        ExtraTreesRegressor(30, min_samples_leaf=2, random_state=0),
    ],
    ids=lambda e: type(e).__name__,
)
def test_forests_predict_exactly_as_scikit_learn_without_joblib(estimator):
    """The member sums the trees itself (no per-tree dispatch): the same numbers."""
    from sklearn.datasets import load_diabetes, load_wine

    from ensemblex.members.sklearn import _forest_predict

    regression = "Regressor" in type(estimator).__name__
    X, y = (load_diabetes if regression else load_wine)(return_X_y=True)
    model = estimator.fit(X[:120], y[:120])
    if regression:
        np.testing.assert_array_equal(
            _forest_predict(model, X, "regression")[:, 0, 0], model.predict(X)
        )
    else:
        np.testing.assert_array_equal(
            _forest_predict(model, X, "multiclass")[:, 0], model.predict_proba(X)
        )
