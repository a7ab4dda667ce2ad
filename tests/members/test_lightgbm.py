"""LightGBM members: native categoricals, the booster's text model, damaged files refused."""

import gzip
import json
import re
import subprocess
import sys

import lightgbm as lgb
import numpy as np
import pytest
from member_cases import fold_context, tables
from sklearn.base import clone

from ensemblex.files import sha256_file
from ensemblex.members import family_of, load_member, member
from ensemblex.members.lightgbm import LightGBMMember
from ensemblex.preprocessing import categorical_indices, make_preprocessor


def _estimator(task):
    kind = lgb.LGBMRegressor if task == "regression" else lgb.LGBMClassifier
    return kind(n_estimators=25, num_leaves=7, min_child_samples=5, random_state=0, verbose=-1)


@pytest.mark.parametrize("task", ["regression", "binary", "multiclass"])
def test_predicts_like_lightgbm_and_round_trips(task, churn_table, tmp_path):
    X, y, X_test = tables(task, churn_table)
    context = fold_context(task, X, y)
    estimator = _estimator(task)
    assert family_of(estimator) == "lightgbm"
    template = member("gbm", estimator)
    assert isinstance(template, LightGBMMember) and template.encoding == "native"
    fitted = template.fit(X, y, context)
    pred = fitted.predict(X_test)
    n_outputs = 1 if task == "regression" else len(np.unique(y))
    assert pred.shape == (len(X_test), 1, n_outputs)

    # reference: LightGBM's scikit-learn wrapper on the same codes, categoricals declared
    pre = make_preprocessor(context.schema, "native")
    ref = clone(estimator).set_params(n_jobs=1)
    ref.fit(pre.fit_transform(X), y, categorical_feature=categorical_indices(context.schema))
    Z = pre.transform(X_test)
    expected = ref.predict(Z)[:, None] if task == "regression" else ref.predict_proba(Z)
    np.testing.assert_allclose(pred[:, 0, :], expected, rtol=0, atol=1e-12)

    folder = fitted.save(tmp_path / "gbm")
    assert {p.name for p in folder.iterdir()} == {
        "member.json",
        "model.txt.gz",
        "preprocessor.skops",
    }
    assert json.loads((folder / "member.json").read_text()) == {
        "family": "lightgbm",
        "name": "gbm",
        "task": task,
        "columns": ["gbm"],
        "settings": {"encoding": "native", "compression": "gzip"},
        "files": {p.name: sha256_file(p) for p in folder.iterdir() if p.name != "member.json"},
    }
    text = gzip.decompress((folder / "model.txt.gz").read_bytes()).decode()
    n_num = len(context.schema.numeric)
    categorical = ",".join(str(i) for i in range(n_num, len(context.schema.features)))
    assert f"[categorical_feature: {categorical}]" in text  # read natively, not as numbers
    assert "[num_threads: 1]" in text  # the fold's thread share
    loaded = load_member(folder)
    np.testing.assert_allclose(loaded.predict(X_test), pred, rtol=0, atol=1e-12)
    # the text file is LightGBM's own format: a booster read from it predicts the same
    raw = lgb.Booster(model_str=text).predict(Z)
    np.testing.assert_allclose(raw.reshape(len(Z), -1)[:, -1], pred[:, 0, -1], rtol=0, atol=1e-12)


@pytest.fixture
def saved(churn_table, tmp_path):
    X, y, _ = tables("binary", churn_table)
    fitted = member("gbm", _estimator("binary")).fit(X, y, fold_context("binary", X, y))
    return fitted.save(tmp_path / "gbm")


def _write_text(saved, content: bytes) -> None:
    """Replace the saved model's text (inside its gzip file) with ``content``."""
    (saved / "model.txt.gz").write_bytes(gzip.compress(content))


@pytest.mark.parametrize("content", [b"", b"hello world\n"])
def test_a_model_file_of_another_kind_is_a_value_error_naming_it(saved, content, damage_guard):
    _write_text(saved, content)
    guard, rehash = damage_guard
    if guard == "parser":
        rehash(saved)
    expected = (
        r"model.txt.gz: not a readable LightGBM model"
        if guard == "parser"
        else r"model.txt.gz: damaged \(its SHA-256 differs"
    )
    with pytest.raises(ValueError, match=expected):
        load_member(saved)


@pytest.mark.parametrize("how", ["truncate", "flip", "not_gzip"])
def test_damaged_compressed_bytes_are_a_value_error_naming_the_file(saved, how, rehash):
    file = saved / "model.txt.gz"
    data = bytearray(file.read_bytes())
    if how == "truncate":
        data = data[: len(data) // 2]
    elif how == "flip":
        data[len(data) // 3 : len(data) // 3 + 40] = bytes(40)
    else:
        data = bytearray(b"tree\nversion=v4\n")
    file.write_bytes(bytes(data))
    rehash(saved)
    with pytest.raises(ValueError, match=r"model.txt.gz: not a readable"):
        load_member(saved)


def test_a_model_saved_as_plain_text_still_loads(saved):
    """Members saved before compression (``model.txt``, no ``compression`` setting) load."""
    meta = json.loads((saved / "member.json").read_text())
    text = gzip.decompress((saved / "model.txt.gz").read_bytes())
    (saved / "model.txt.gz").unlink()
    (saved / "model.txt").write_bytes(text)
    del meta["settings"]["compression"]
    meta["files"] = {
        "model.txt": sha256_file(saved / "model.txt"),
        **{k: v for k, v in meta["files"].items() if k != "model.txt.gz"},
    }
    (saved / "member.json").write_text(json.dumps(meta))
    assert load_member(saved).predict is not None


_LOAD = """
import sys
from ensemblex.members import load_member
try:
    load_member(sys.argv[1])
except ValueError as exc:
    print("ValueError:", exc)
else:
    print("loaded")
"""


def _replace_once(old: bytes, new: bytes):
    return lambda data: data.replace(old, new, 1)


def _flip_third(data: bytes) -> bytes:
    start = len(data) // 3
    return data[:start] + bytes(b ^ 0xFF for b in data[start : start + 40]) + data[start + 40 :]


# edits that made LightGBM's own parser abort or crash the process when fuzzed
_DAMAGE = {
    "truncate": lambda data: data[: len(data) // 2],
    "truncate_in_parameters": lambda data: data[: data.index(b"end of parameters") - 30],
    "flip": _flip_third,
    "merged_lines": _replace_once(b"\nright_child=", b"\x1dright_child="),
    "num_cat": _replace_once(b"num_cat=0", b"num_cat=5"),
    "no_num_cat": _replace_once(b"num_cat=0", b"numGcat=0"),
    "letter_in_number": _replace_once(b"split_gain=", b"split_gain=x"),
    "child_out_of_range": _replace_once(b"left_child=", b"left_child=9"),
}


@pytest.mark.parametrize("how", list(_DAMAGE))
def test_a_damaged_model_txt_is_a_value_error_not_a_crash(saved, how, damage_guard):
    data = gzip.decompress((saved / "model.txt.gz").read_bytes())
    damaged = _DAMAGE[how](data)
    assert damaged != data
    _write_text(saved, damaged)
    guard, rehash = damage_guard
    if guard == "parser":
        rehash(saved)
    # in a child process: a crash must not take the test run down with it
    done = subprocess.run(
        [sys.executable, "-c", _LOAD, str(saved)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"crashed with {done.returncode}: {done.stderr[-300:]}"
    assert "ValueError:" in done.stdout and "model.txt" in done.stdout


def _edit_field(text: str, key: str, tree: int, edit) -> str:
    """``text`` with ``edit`` applied to the values of ``key`` in tree ``tree`` (and no
    ``tree_sizes``, which the edit would contradict)."""
    text = re.sub(r"\ntree_sizes=[^\n]*", "", text, count=1)
    at = text.index(f"Tree={tree}\n")
    start = text.index(f"\n{key}=", at) + len(key) + 2
    stop = text.index("\n", start)
    return text[:start] + " ".join(edit(text[start:stop].split())) + text[stop:]


def _swap_first_two(values):
    return [values[1], values[0], *values[2:]] if len(values) > 1 else values


# (field, edit, what the check says): each problem planted in tree 3, trees 0-2 intact
_PLANTED = [
    ("split_feature", lambda v: ["99", *v[1:]], "split_feature out of range"),
    ("left_child", lambda v: ["-99", *v[1:]], "child index out of range"),
    ("right_child", lambda v: [v[0], *v], "right_child has"),
    ("left_child", lambda v: [v[0], v[0], *v[2:]], "children do not form a tree"),
    ("threshold", lambda v: ["1e", *v[1:]], "malformed line"),
    ("decision_type", lambda v: ["1.5", *v[1:]], "missing or non-integer split fields"),
    ("num_leaves", lambda v: ["0"], "num_leaves < 1"),
]


@pytest.mark.parametrize("key, edit, message", _PLANTED)
def test_the_model_text_check_names_the_tree_and_the_problem(saved, key, edit, message):
    from ensemblex.members.lightgbm_text import check_model_text

    text = gzip.decompress((saved / "model.txt.gz").read_bytes()).decode()
    assert check_model_text(text.encode()) is None
    damaged = _edit_field(text, key, 3, edit)
    assert damaged != text
    assert check_model_text(damaged.encode()).startswith(f"tree 3: {message}")


def test_a_categorical_split_outside_its_tables_is_refused(saved):
    from ensemblex.members.lightgbm_text import check_model_text

    text = gzip.decompress((saved / "model.txt.gz").read_bytes()).decode()
    tree, block = next(
        (int(m[1]), m[2])
        for m in re.finditer(r"Tree=(\d+)\n(.*?)\n\n", text, re.S)
        if "num_cat=0" not in m[2]
    )
    categorical = block.split("decision_type=")[1].split("\n")[0].split()
    i = next(i for i, d in enumerate(categorical) if int(d) & 1)
    damaged = _edit_field(text, "threshold", tree, lambda v: [*v[:i], "7", *v[i + 1 :]])
    assert check_model_text(damaged.encode()) == (
        f"tree {tree}: a categorical split points outside the category tables"
    )
