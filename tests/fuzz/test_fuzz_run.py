"""Fuzzing ``ensemblex run``: generated training tables and options.

Most generated tables are refused before anything is fitted; those that are valid are
cross-fitted with a cheap zoo (``--zoo fast`` patched to two quick members), so the door
checks, the task rule, the run folder and its writers are the real ones.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from fuzz_support import (
    CELLS,
    FORMATS,
    JUNK,
    TEXT,
    case_dir,
    cheap_zoo_patched,
    check_outcome,
    choose_column,
    columns,
    frame_of,
    fuzz,
    invoke,
    raw_frames,
    write_table,
)
from hypothesis import given
from hypothesis import strategies as st

TASKS = st.sampled_from(["auto", "auto", "auto", "binary", "multiclass", "regression"])
FOLDS = st.sampled_from(["2", "2", "3", "50", "2", "2", "3", "1"])
TEST_SIZES = st.sampled_from(["0.2", "0.25", "0.5", "0.2", "0.25", "0.5", "0.01"])
MEMBERS = st.sampled_from(
    [
        "w=tfidf_logistic",
        "w=tfidf_logistic:ngram_max=x",
        "bad",
        "=sklearn",
        "x=nope",
        "w=tfidf_logistic:C=-1",
        "w=tfidf_logistic:column=zz",
        "c=catboost:depth=2",
    ]
)


@st.composite
def training_tables(draw):
    """A target column (classes, values, one class, one row, missing) and a few features."""
    n = draw(st.sampled_from([1, 2, 4, 12, 16]))
    target = draw(columns(n))
    names = ["y"]
    values = [target]
    for _ in range(draw(st.integers(0, 3))):
        names.append(draw(st.sampled_from(["x", "c", "text", "y"]) | TEXT))
        values.append(draw(columns(n)))
    if draw(st.integers(0, 4)) == 0 and n:  # one odd cell
        j = draw(st.integers(0, len(values) - 1))
        values[j][draw(st.integers(0, n - 1))] = draw(CELLS)
    return frame_of(names, values)


def _run(scratch, frame, fmt, junk, target, options):
    with case_dir(scratch) as folder:
        path = write_table(frame, folder, "train", fmt, junk)
        out = folder / "run"
        args = ["run", path, "--out", out, "--jobs", "1", *options]
        if target is not None:
            args += ["--target", target]
        with cheap_zoo_patched():
            result = invoke(args)

        def valid():
            summary = json.loads((out / "leaderboard.json").read_text())
            assert summary["target"] == target
            assert (out / "model" / "manifest.json").is_file()
            assert len(pd.read_parquet(out / "oof.parquet")) == summary["rows"]["train"]
            assert (out / "report.html").is_file()

        def only_the_store():  # a refused run may leave its resumable store, nothing else
            if out.exists():
                assert {p.name for p in out.iterdir()} <= {"work"}, list(out.iterdir())

        code = check_outcome(result, [], valid, only_the_store)
        return code


def _options(draw):
    options = ["--task", draw(TASKS), "--folds", draw(FOLDS), "--test-size", draw(TEST_SIZES)]
    if draw(st.integers(0, 5)) == 0:
        options += ["--zoo", "none", "--member", draw(MEMBERS)]
    else:
        options += ["--zoo", "fast"]
    return options


@fuzz(430)
@given(frame=training_tables(), fmt=FORMATS, junk=JUNK, data=st.data())
def test_run_training_tables(scratch, frame, fmt, junk, data):
    target = data.draw(st.sampled_from(["y", "y", "y", "y", None, "nope"]))
    _run(scratch, frame, fmt, junk, target, _options(data.draw))


@fuzz(72)
@given(frame=raw_frames(max_rows=6), fmt=FORMATS, junk=JUNK, data=st.data())
def test_run_raw_tables(scratch, frame, fmt, junk, data):
    target = choose_column(data.draw, str(frame.columns[0]) if len(frame.columns) else "y", frame)
    _run(scratch, frame, fmt, junk, target, _options(data.draw))


@st.composite
def valid_tables(draw):
    """Tables a run accepts: two classes (or values), numeric, categorical and text columns,
    a few odd cells (missing, a stray string in a numeric column, unicode)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = 24
    task = draw(st.sampled_from(["binary", "multiclass", "regression"]))
    labels = {"binary": ["no", "yes"], "multiclass": [0, 1, 2], "regression": None}[task]
    y = rng.normal(size=n) if labels is None else [labels[i % len(labels)] for i in range(n)]
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "cat": rng.choice(["a", "é", "中"], n),
            "text": [" ".join(rng.choice(["good", "bad", "fine", "poor"], 3)) for _ in range(n)],
            draw(st.sampled_from(["target", "y é", "[/]"])): y,
        }
    ).astype({"x": object})
    frame.iloc[draw(st.integers(0, n - 1)), 0] = draw(st.sampled_from([None, "n/a", "1e3"]))
    return frame, frame.columns[-1], task


@fuzz(8)
@given(case=valid_tables(), data=st.data())
def test_run_valid_tables(scratch, case, data):
    """A handful of runs that fit (about 1 s each): exit 0 with a complete run folder."""
    frame, target, task = case
    options = [
        "--folds",
        "2",
        "--test-size",
        "0.25",
        "--task",
        data.draw(st.sampled_from(["auto", task])),
    ]
    if task != "regression" and data.draw(st.booleans()):
        options += ["--zoo", "none", "--member", "w=tfidf_logistic:column=text"]
    else:
        options += ["--zoo", "fast"]
    assert _run(scratch, frame, "csv", b"", target, options) == 0
