"""Torch members: a deep estimator's networks (or heads) as columns, safetensors round-trip."""

import json

import numpy as np
import pytest
import torch
from member_cases import fold_context, tables
from sklearn.base import clone

from ensemblex.deep import (
    DeepEnsembleClassifier,
    DeepEnsembleRegressor,
    TabMClassifier,
    TabMRegressor,
)
from ensemblex.members import family_of, load_member, member
from ensemblex.members.torch import TorchMember
from ensemblex.preprocessing import make_preprocessor


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _estimators(task):
    reg = task == "regression"
    mlps = (DeepEnsembleRegressor if reg else DeepEnsembleClassifier)(
        n_members=3, hidden=(8,), max_epochs=4, lr=1e-2, random_state=1
    )
    tabm = (TabMRegressor if reg else TabMClassifier)(
        k=4, n_blocks=1, d_block=16, max_epochs=4, random_state=1
    )
    return [("mlps", mlps), ("tabm", tabm)]


CASES = [
    (task, name, est)
    for task in ("regression", "binary", "multiclass")
    for name, est in _estimators(task)
]


@pytest.mark.parametrize(("task", "name", "estimator"), CASES)
def test_columns_are_the_networks_and_round_trip(task, name, estimator, churn_table, tmp_path):
    X, y, X_test = tables(task, churn_table)
    context = fold_context(task, X, y)
    assert family_of(estimator) == "torch"
    template = member(name, estimator)
    assert isinstance(template, TorchMember) and template.encoding == "onehot"
    k = estimator.ensemble_size
    assert template.column_names() == [f"{name}.{j}" for j in range(k)]
    fitted = template.fit(X, y, context)
    assert fitted.model_.n_threads == 1  # the fold's thread share
    pred = fitted.predict(X_test)
    n_outputs = 1 if task == "regression" else len(np.unique(y))
    assert pred.shape == (len(X_test), k, n_outputs)
    assert np.abs(pred[:, 0] - pred[:, 1]).max() > 1e-6  # different networks / heads

    # reference: the deep estimator fitted by hand on the same encoding, seeded alike
    pre = make_preprocessor(context.schema, "onehot")
    ref = clone(estimator).set_params(n_threads=1).fit(pre.fit_transform(X), y)
    Z = pre.transform(X_test)
    np.testing.assert_allclose(pred, ref.predict_members(Z), rtol=0, atol=1e-12)
    mean = ref.predict(Z)[:, None] if task == "regression" else ref.predict_proba(Z)
    np.testing.assert_allclose(pred.mean(axis=1), mean, rtol=0, atol=1e-6)

    folder = fitted.save(tmp_path / name)
    files = {p.name for p in folder.iterdir()}
    assert files == {"member.json", "model.safetensors", "preprocessor.skops"}
    meta = json.loads((folder / "member.json").read_text())
    assert meta["family"] == "torch" and meta["task"] == task
    assert meta["columns"] == [f"{name}.{j}" for j in range(k)]
    assert meta["settings"] == {"encoding": "onehot"}
    loaded = load_member(folder)
    assert type(loaded.model_) is type(estimator) and loaded.n_columns() == k
    np.testing.assert_allclose(loaded.predict(X_test), pred, rtol=0, atol=1e-12)


@pytest.fixture
def saved(churn_table, tmp_path):
    X, y, _ = tables("binary", churn_table)
    name, estimator = _estimators("binary")[0]
    fitted = member(name, estimator).fit(X, y, fold_context("binary", X, y))
    return fitted.save(tmp_path / name)


@pytest.mark.parametrize("how", ["truncate", "flip", "empty"])
def test_a_damaged_safetensors_file_is_a_value_error_naming_it(saved, how, damage_guard):
    file = saved / "model.safetensors"
    data = bytearray(file.read_bytes())
    if how == "truncate":
        data = data[: len(data) // 2]
    elif how == "empty":
        data = bytearray()
    else:
        data[20:60] = bytes(b ^ 0xFF for b in data[20:60])  # inside the JSON header
    file.write_bytes(bytes(data))
    guard, rehash = damage_guard
    if guard == "parser":
        rehash(saved)
    expected = (
        r"model.safetensors: not a readable safetensors file"
        if guard == "parser"
        else r"model.safetensors: damaged \(its SHA-256 differs"
    )
    with pytest.raises(ValueError, match=expected):
        load_member(saved)


def test_a_file_naming_another_class_is_refused(saved, rehash):
    from safetensors.torch import save_file

    config = {"estimator": "Popen", "params": {"args": ["rm", "-rf", "/"]}}
    save_file(
        {"x": torch.zeros(1)},
        str(saved / "model.safetensors"),
        metadata={"config": json.dumps(config)},
    )
    rehash(saved)  # a tamperer redoes the digests: the class allowlist must still refuse
    with pytest.raises(ValueError, match=r"estimator must be one of .*however: 'Popen'"):
        load_member(saved)
