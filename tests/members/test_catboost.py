"""CatBoost members: predictions equal CatBoost's own, the .cbm model round-trips, damage is a
ValueError naming the file."""

import json

import catboost as cb
import numpy as np
import pytest
from member_cases import fold_context, tables
from sklearn.base import clone

from ensemblex.files import sha256_file
from ensemblex.members import family_of, load_member, member
from ensemblex.members.catboost import CatBoostMember
from ensemblex.preprocessing import make_preprocessor


def _estimator(task):
    kind = cb.CatBoostRegressor if task == "regression" else cb.CatBoostClassifier
    return kind(
        iterations=25, depth=3, random_seed=0, verbose=0, thread_count=1, allow_writing_files=False
    )


@pytest.mark.parametrize("task", ["regression", "binary", "multiclass"])
def test_predicts_like_catboost_and_round_trips(task, churn_table, tmp_path):
    X, y, X_test = tables(task, churn_table)
    context = fold_context(task, X, y)
    estimator = _estimator(task)
    assert family_of(estimator) == "catboost"
    template = member("cat", estimator)
    assert isinstance(template, CatBoostMember) and template.encoding == "native"
    fitted = template.fit(X, y, context)
    pred = fitted.predict(X_test)
    n_outputs = 1 if task == "regression" else len(np.unique(y))
    assert pred.shape == (len(X_test), 1, n_outputs)

    pre = make_preprocessor(context.schema, "native")
    ref = clone(estimator).fit(pre.fit_transform(X), y)
    Z = pre.transform(X_test)
    expected = ref.predict(Z)[:, None] if task == "regression" else ref.predict_proba(Z)
    np.testing.assert_allclose(pred[:, 0, :], expected, rtol=0, atol=1e-12)

    folder = fitted.save(tmp_path / "cat")
    assert {p.name for p in folder.iterdir()} == {"member.json", "model.cbm", "preprocessor.skops"}
    assert json.loads((folder / "member.json").read_text()) == {
        "family": "catboost",
        "name": "cat",
        "task": task,
        "columns": ["cat"],
        "settings": {"encoding": "native"},
        "files": {p.name: sha256_file(p) for p in folder.iterdir() if p.name != "member.json"},
    }
    loaded = load_member(folder)
    assert loaded.task == task
    np.testing.assert_allclose(loaded.predict(X_test), pred, rtol=0, atol=1e-12)
    raw = cb.CatBoost().load_model(str(folder / "model.cbm"))
    kind = "RawFormulaVal" if task == "regression" else "Probability"
    expected = np.asarray(raw.predict(Z, prediction_type=kind)).reshape(len(Z), -1)
    np.testing.assert_allclose(pred[:, 0, :], expected, rtol=0, atol=1e-12)


@pytest.fixture
def saved(churn_table, tmp_path):
    X, y, _ = tables("binary", churn_table)
    fitted = member("cat", _estimator("binary")).fit(X, y, fold_context("binary", X, y))
    return fitted.save(tmp_path / "cat")


def _flip(data: bytearray, start: int) -> bytes:
    data[start : start + 40] = bytes(b ^ 0xFF for b in data[start : start + 40])
    return bytes(data)


@pytest.mark.parametrize(
    "how",
    [
        "truncate",
        "empty",
        "flip_header",
        "flip_middle",
    ],
)
def test_a_damaged_model_is_a_value_error_naming_the_file(saved, how, damage_guard, churn_table):
    file = saved / "model.cbm"
    data = bytearray(file.read_bytes())
    damaged = {
        "truncate": lambda: bytes(data[: len(data) // 2]),
        "empty": lambda: b"",
        "flip_header": lambda: _flip(data, 0),
        "flip_middle": lambda: _flip(data, len(data) // 3),
    }[how]()
    file.write_bytes(damaged)
    guard, rehash = damage_guard
    if guard == "parser":
        rehash(saved)
    if guard == "parser" and how == "flip_middle":
        # CatBoost's parser accepts flipped split values (why the digest exists): the load
        # must still end in a usable member or our ValueError, never a foreign exception
        try:
            loaded = load_member(saved)
        except ValueError as exc:
            assert "model.cbm" in str(exc)
            return
        _, _, X_test = tables("binary", churn_table)
        pred = loaded.predict(X_test)
        assert pred.shape == (len(X_test), 1, 2) and np.isfinite(pred).all()
        return
    expected = (
        r"model.cbm: not a readable CatBoost model"
        if guard == "parser"
        else r"damaged \(its SHA-256 differs"
    )
    with pytest.raises(ValueError, match=expected):
        load_member(saved)
