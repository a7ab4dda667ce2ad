"""XGBoost members: predictions equal XGBoost's own, its JSON model round-trips, damage is a
one-line ValueError naming the file."""

import gzip
import json

import numpy as np
import pytest
import xgboost as xgb
from member_cases import fold_context, tables
from sklearn.base import clone

from ensemblex.files import sha256_file
from ensemblex.members import family_of, load_member, member
from ensemblex.members.xgboost import XGBoostMember
from ensemblex.preprocessing import make_preprocessor


def _estimator(task):
    kind = xgb.XGBRegressor if task == "regression" else xgb.XGBClassifier
    return kind(n_estimators=20, max_depth=3, learning_rate=0.3, random_state=0, n_jobs=1)


@pytest.mark.parametrize("task", ["regression", "binary", "multiclass"])
def test_predicts_like_xgboost_and_round_trips(task, churn_table, tmp_path):
    X, y, X_test = tables(task, churn_table)
    context = fold_context(task, X, y)
    estimator = _estimator(task)
    assert family_of(estimator) == "xgboost"
    template = member("xgb", estimator)
    assert isinstance(template, XGBoostMember) and template.encoding == "native"
    fitted = template.fit(X, y, context)
    pred = fitted.predict(X_test)
    n_outputs = 1 if task == "regression" else len(np.unique(y))
    assert pred.shape == (len(X_test), 1, n_outputs)

    pre = make_preprocessor(context.schema, "native")
    ref = clone(estimator).fit(pre.fit_transform(X), y)
    Z = pre.transform(X_test)
    expected = ref.predict(Z)[:, None] if task == "regression" else ref.predict_proba(Z)
    np.testing.assert_allclose(pred[:, 0, :], expected, rtol=0, atol=1e-12)

    folder = fitted.save(tmp_path / "xgb")
    assert {p.name for p in folder.iterdir()} == {
        "member.json",
        "model.json.gz",
        "preprocessor.skops",
    }
    assert json.loads((folder / "member.json").read_text()) == {
        "family": "xgboost",
        "name": "xgb",
        "task": task,
        "columns": ["xgb"],
        "settings": {"encoding": "native", "compression": "gzip"},
        "files": {p.name: sha256_file(p) for p in folder.iterdir() if p.name != "member.json"},
    }
    text = gzip.decompress((folder / "model.json.gz").read_bytes())
    json.loads(text)  # XGBoost's JSON format, no pickle
    loaded = load_member(folder)
    assert loaded.task == task
    np.testing.assert_allclose(loaded.predict(X_test), pred, rtol=0, atol=1e-12)
    booster = xgb.Booster(model_file=bytearray(text))
    raw = booster.predict(xgb.DMatrix(Z))
    np.testing.assert_allclose(
        raw.reshape(len(Z), -1)[:, -1],
        pred[:, 0, -1],
        rtol=0,
        atol=1e-6,  # float32 output
    )


@pytest.fixture
def saved(churn_table, tmp_path):
    X, y, _ = tables("binary", churn_table)
    fitted = member("xgb", _estimator("binary")).fit(X, y, fold_context("binary", X, y))
    return fitted.save(tmp_path / "xgb")


@pytest.mark.parametrize(
    "how",
    [
        "truncate",
        "empty",
        "garbage",
        "flip",
    ],
)
def test_a_damaged_model_is_a_one_line_value_error_naming_the_file(saved, how, damage_guard):
    file = saved / "model.json.gz"
    data = bytearray(gzip.decompress(file.read_bytes()))
    if how == "truncate":
        data = data[: len(data) // 2]
    elif how == "empty":
        data = b""
    elif how == "garbage":
        data = b"hello world"
    else:
        start = len(data) // 3
        data[start : start + 40] = bytes(b ^ 0xFF for b in data[start : start + 40])
    file.write_bytes(gzip.compress(bytes(data)))
    guard, rehash = damage_guard
    if guard == "parser":
        rehash(saved)
    expected = (
        r"model.json.gz: not a readable XGBoost model"
        if guard == "parser"
        else r"damaged \(its SHA-256 differs"
    )
    with pytest.raises(ValueError, match=expected) as info:
        load_member(saved)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and "Stack trace" not in message
