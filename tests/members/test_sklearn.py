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
from ensemblex.members import forest_io, load_member, member
from ensemblex.members.forest_io import FOREST_FORMAT, TREES_FILE
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
    forest = name == "forest"  # a forest's trees go to a file of their own
    assert files == {"member.json", "model.skops", "preprocessor.skops"} | (
        {TREES_FILE} if forest else set()
    )
    meta = json.loads((folder / "member.json").read_text())
    assert meta == {
        "family": "sklearn",
        "name": name,
        "task": task,
        "columns": [name],
        "settings": {"encoding": encoding} | ({"forest_format": FOREST_FORMAT} if forest else {}),
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


# ---------------------------------------------------------------- forests: skops shell + trees
def _assert_same_forest(loaded, model, Z):
    """``loaded`` is ``model``: scikit-learn's own outputs, the trees' attributes and arrays."""
    assert type(loaded) is type(model) and set(loaded.__dict__) == set(model.__dict__)
    assert len(loaded.estimators_) == len(model.estimators_)
    np.testing.assert_array_equal(loaded.predict(Z), model.predict(Z))
    if hasattr(model, "predict_proba"):
        np.testing.assert_array_equal(loaded.predict_proba(Z), model.predict_proba(Z))
    np.testing.assert_array_equal(loaded.apply(Z), model.apply(Z))
    paths, paths_expected = loaded.decision_path(Z), model.decision_path(Z)
    assert (paths[0] != paths_expected[0]).nnz == 0
    np.testing.assert_array_equal(paths[1], paths_expected[1])
    np.testing.assert_array_equal(loaded.feature_importances_, model.feature_importances_)
    for got, tree in zip(loaded.estimators_, model.estimators_, strict=True):
        assert type(got) is type(tree) and got.__dict__.keys() == tree.__dict__.keys()
        for key, value in tree.__dict__.items():
            if isinstance(value, np.ndarray):
                assert got.__dict__[key].dtype == value.dtype
                np.testing.assert_array_equal(got.__dict__[key], value)
            elif key != "tree_":
                assert type(got.__dict__[key]) is type(value) and got.__dict__[key] == value, key
        state, expected = got.tree_.__getstate__(), tree.tree_.__getstate__()
        assert (state["max_depth"], state["node_count"]) == (
            expected["max_depth"],
            expected["node_count"],
        )
        for field in expected["nodes"].dtype.names:
            np.testing.assert_array_equal(state["nodes"][field], expected["nodes"][field])
        np.testing.assert_array_equal(state["values"], expected["values"])
        np.testing.assert_array_equal(got.tree_.n_classes, tree.tree_.n_classes)


FORESTS = [
    ("binary", RandomForestClassifier(12, min_samples_leaf=3, max_features="sqrt", random_state=0)),
    # pruned trees and per-bootstrap class weights
    ("binary", RandomForestClassifier(8, ccp_alpha=0.002, class_weight="balanced_subsample")),
    ("multiclass", ExtraTreesClassifier(10, min_samples_leaf=2, random_state=0)),
    ("regression", RandomForestRegressor(10, max_samples=0.5, random_state=0)),
    # best-first trees (max_leaf_nodes): another builder, another node order
    ("regression", ExtraTreesRegressor(10, max_leaf_nodes=25, random_state=0)),
]


@pytest.mark.parametrize(
    ("task", "estimator"),
    FORESTS,
    ids=["rf-binary", "rf-pruned-weighted", "et-multiclass", "rf-regression", "et-best-first"],
)
def test_forests_round_trip_bit_for_bit_through_their_trees_file(
    task, estimator, churn_table, tmp_path
):
    X, y, X_test = tables(task, churn_table)
    fitted = member("forest", estimator).fit(X, y, fold_context(task, X, y))
    model = fitted.model_
    n_trees, first_tree = len(model.estimators_), model.estimators_[0].tree_
    folder = fitted.save(tmp_path / "forest")
    # the fitted model is left as it is
    assert len(model.estimators_) == n_trees and model.estimators_[0].tree_ is first_tree
    assert json.loads((folder / "member.json").read_text())["settings"]["forest_format"] == (
        FOREST_FORMAT
    )
    loaded = load_member(folder)
    Z = fitted.encode(X_test)
    _assert_same_forest(loaded.model_, model, Z)
    np.testing.assert_array_equal(loaded.predict(X_test), fitted.predict(X_test))


def test_a_forest_saved_as_one_skops_file_still_loads(churn_table, tmp_path, monkeypatch):
    """Members saved before the trees file: no forest_format, the whole forest in skops."""
    import ensemblex.members.sklearn as sklearn_members

    X, y, X_test = tables("binary", churn_table)
    fitted = member("forest", RandomForestClassifier(10, random_state=0)).fit(
        X, y, fold_context("binary", X, y)
    )
    with monkeypatch.context() as patch:  # what the earlier code wrote
        patch.setattr(sklearn_members, "splits_into_trees", lambda model: False)
        folder = fitted.save(tmp_path / "old")
    assert {p.name for p in folder.iterdir()} == {
        "member.json",
        "model.skops",
        "preprocessor.skops",
    }
    assert json.loads((folder / "member.json").read_text())["settings"] == {"encoding": "ordinal"}
    loaded = load_member(folder)
    _assert_same_forest(loaded.model_, fitted.model_, fitted.encode(X_test))


def test_forests_whose_trees_differ_stay_one_skops_file(churn_table, tmp_path):
    X, y, X_test = tables("binary", churn_table)
    fitted = member("forest", RandomForestClassifier(6, random_state=0)).fit(
        X, y, fold_context("binary", X, y)
    )
    fitted.model_.estimators_[2].min_samples_leaf = 4  # not one template for all trees
    folder = fitted.save(tmp_path / "forest")
    assert not (folder / TREES_FILE).exists()
    _assert_same_forest(load_member(folder).model_, fitted.model_, fitted.encode(X_test))


@pytest.fixture
def saved_forest(churn_table, tmp_path):
    X, y, _ = tables("binary", churn_table)
    fitted = member("forest", RandomForestClassifier(6, max_depth=6, random_state=0)).fit(
        X, y, fold_context("binary", X, y)
    )
    return fitted.save(tmp_path / "forest")


def _inner(arrays, tree=1):
    """The first split node of ``tree`` (its local index) and that tree's first node."""
    start = int(arrays["node_count"][:tree].sum())
    count = int(arrays["node_count"][tree])
    local = np.flatnonzero(arrays["left_child"][start : start + count] != -1)
    return int(local[len(local) // 2]), start


def _set(name, value, *, leaf=False):
    def change(arrays):
        node, start = _inner(arrays)
        if leaf:
            node = int(arrays["left_child"][start + node])
            while arrays["left_child"][start + node] != -1:
                node = int(arrays["left_child"][start + node])
        arrays[name][start + node] = value(arrays, node) if callable(value) else value

    return change


TAMPERING = {
    "child outside its tree": (_set("left_child", lambda a, n: a["node_count"][1] + 3), "child"),
    "child before its parent": (_set("right_child", 0), "child index"),
    "one child only": (_set("right_child", -1), "one child"),
    "a child shared": (
        _set("right_child", lambda a, n: a["left_child"][a["node_count"][0] + n]),
        "exactly one node",
    ),
    "feature out of range": (_set("feature", 10), r"feature must be in \[0, 10\)"),
    "a leaf with a feature": (_set("feature", 3, leaf=True), "at leaves"),
    "threshold NaN": (_set("threshold", np.nan), "threshold is NaN"),
    "missing_go_to_left": (_set("missing_go_to_left", 7), "missing_go_to_left must be 0 or 1"),
    "max_depth too small": (
        lambda a: a["max_depth"].__setitem__(1, a["max_depth"][1] - 1),
        "tree 1 has max_depth",
    ),
    "node counts": (lambda a: a["node_count"].__setitem__(0, a["node_count"][0] + 1), "sum to"),
    "a dtype": (lambda a: a.__setitem__("feature", a["feature"].astype(np.int32)), "int64"),
    "values shape": (lambda a: a.__setitem__("values", a["values"][:, :, :1].copy()), "shape"),
    "an array missing": (lambda a: a.pop("random_state"), "expected the arrays"),
    "n_classes": (lambda a: a["n_classes"].__setitem__(0, 3), "n_classes must be"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_a_tampered_trees_file_is_refused_naming_it(case, saved_forest, rehash):
    change, message = TAMPERING[case]
    path = saved_forest / TREES_FILE
    arrays = {name: a.copy() for name, a in forest_io.read_trees_file(path).items()}
    change(arrays)
    forest_io.write_trees_file(arrays, path)
    rehash(saved_forest)  # past the digests: the trees' own checks must refuse
    with pytest.raises(ValueError, match=rf"{TREES_FILE}: not a forest's trees: .*{message}"):
        load_member(saved_forest)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("truncate", "not a readable LZ4 frame"),
        ("magic", "not a trees file"),
        ("size", "claims 1099511627776 bytes"),
        ("inner", "not a readable safetensors file"),
    ],
)
def test_a_damaged_trees_file_is_refused_naming_it(how, message, saved_forest, rehash):
    path = saved_forest / TREES_FILE
    data = path.read_bytes()
    if how == "truncate":
        _damage(path, "truncate")
    elif how == "magic":
        path.write_bytes(b"PK" + data[2:])
    elif how == "size":
        path.write_bytes(data[:8] + (1 << 40).to_bytes(8, "little") + data[16:])
    else:  # a valid LZ4 frame of bytes that are no safetensors file
        packed = forest_io.pa_codec().compress(b"x" * 100, asbytes=True)
        path.write_bytes(data[:8] + (100).to_bytes(8, "little") + packed)
    with pytest.raises(ValueError, match=rf"{TREES_FILE}: damaged \(its SHA-256 differs"):
        load_member(saved_forest)
    rehash(saved_forest)
    with pytest.raises(ValueError, match=rf"{TREES_FILE}: {message}"):
        load_member(saved_forest)


def test_random_damage_to_tree_indices_never_crashes(saved_forest):
    """Any change to the index arrays is refused or gives trees scikit-learn walks safely."""
    path, shell = saved_forest / TREES_FILE, saved_forest / "model.skops"
    original = forest_io.read_trees_file(path)
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(50, 10)) * 3
    loaded = 0
    for _ in range(60):
        arrays = {name: a.copy() for name, a in original.items()}
        name = rng.choice(["left_child", "right_child", "feature", "node_count", "max_depth"])
        target = arrays[name]
        target[rng.integers(len(target))] += rng.choice([-3, -2, -1, 1, 2, 40])
        forest_io.write_trees_file(arrays, path)
        try:
            forest = forest_io.load_forest(shell)
        except ValueError as exc:
            assert str(exc).startswith(f"{path}: not a forest's trees")
            continue
        forest.predict_proba(Z), forest.decision_path(Z), forest.feature_importances_
        loaded += 1
    assert loaded < 30  # most damage is refused (a changed split feature is not damage)


def test_an_unknown_forest_format_is_refused(saved_forest):
    settings = {"encoding": "ordinal", "forest_format": "skops-shell+safetensors-trees/9"}
    with pytest.raises(ValueError, match=r"model.skops: forest_format must be .*however"):
        SklearnMember.load_model(saved_forest / "model.skops", "binary", settings)


def test_a_forest_trained_on_missing_values_round_trips(churn_table, tmp_path):
    # scikit-learn splits missing values off with an infinite threshold, which must load
    X, y, X_test = tables("binary", churn_table)
    X = X.copy()
    X.loc[X.index[::3], "Balance"] = np.nan
    estimator = RandomForestClassifier(10, random_state=0)
    fitted = member("forest", estimator, encoding="native").fit(X, y, fold_context("binary", X, y))
    thresholds = np.concatenate([t.tree_.threshold for t in fitted.model_.estimators_])
    assert np.isinf(thresholds).any()
    loaded = load_member(fitted.save(tmp_path / "forest"))
    np.testing.assert_array_equal(loaded.predict(X_test), fitted.predict(X_test))


def test_a_loaded_member_predicts_after_copy_and_pickle(churn_table, tmp_path):
    import copy
    import pickle

    X, y, X_test = tables("binary", churn_table)
    fitted = member("forest", RandomForestClassifier(5, random_state=0)).fit(
        X, y, fold_context("binary", X, y)
    )
    loaded = load_member(fitted.save(tmp_path / "forest"))
    expected = fitted.predict(X_test)
    for other in (copy.deepcopy(loaded), pickle.loads(pickle.dumps(loaded))):
        np.testing.assert_array_equal(other.predict(X_test), expected)
