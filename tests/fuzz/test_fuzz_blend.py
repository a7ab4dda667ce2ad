"""Fuzzing ``ensemblex blend``: generated OOF and test prediction tables and options."""

from __future__ import annotations

import pandas as pd
from fuzz_support import (
    FORMATS,
    JUNK,
    case_dir,
    check_outcome,
    choose_column,
    fuzz,
    invoke,
    prediction_frames,
    raw_frames,
    valid_json,
    write_table,
)
from hypothesis import given
from hypothesis import strategies as st

TASKS = st.sampled_from(["auto", "auto", "binary", "multiclass", "regression"])
# auto (nested CV over every candidate) costs ~50 ms on a small table; the rest less
METHODS = st.sampled_from(["mean", "best", "weighted", "greedy", "stack", "auto"])
FOLDS = st.sampled_from(["2", "2", "2", "2", "3", "3", "5", "12", "5000", "1"])
METRICS = st.sampled_from(["auto", "auto", "rmse", "log_loss", "roc_auc", "accuracy", "bogus"])


def _blend(scratch, oof, fmt, junk, test, target, id_col, options):
    with case_dir(scratch) as folder:
        path = write_table(oof, folder, "oof", fmt, junk)
        out = folder / "out"
        args = ["blend", path, "--out", out, *options]
        if target is not None:
            args += ["--target", target]
        if id_col is not None:
            args += ["--id", id_col]
        rows = len(oof)
        if test is not None:
            args += ["--test", write_table(test, folder, "test", "csv")]
            rows = len(test)
        result = invoke(args)

        def valid():
            summary = valid_json(out / "blend.json")
            predictions = pd.read_csv(out / "predictions.csv")
            assert len(predictions) == rows
            assert summary["method"] in summary["nested_cv_scores"]
            # the folds used are the folds asked for (or the command refused them)
            assert summary["folds"] == int(options[options.index("--folds") + 1])

        return check_outcome(result, [out], valid)


def _options(draw):
    folds = draw(FOLDS)
    return [
        "--task",
        draw(TASKS),
        "--method",
        draw(METHODS),
        "--metric",
        draw(METRICS),
        "--folds",
        folds,
    ]


@fuzz(410)
@given(case=prediction_frames(), fmt=FORMATS, junk=JUNK, data=st.data())
def test_blend_prediction_tables(scratch, case, fmt, junk, data):
    frame, target, id_col, _ = case
    target = data.draw(st.sampled_from([target] * 5 + [None, "nope"]))
    id_col = choose_column(data.draw, id_col, frame) if id_col else None
    test = None
    pick = data.draw(st.sampled_from(["none", "none", "same", "other"]))
    if pick == "same":  # the OOF table's own rows, sometimes without the target
        test = frame.drop(columns=["target"]) if data.draw(st.booleans()) else frame
    elif pick == "other":
        test = data.draw(prediction_frames())[0]
    options = _options(data.draw)
    if data.draw(st.integers(0, 4)) == 0:
        options += ["--positive", data.draw(st.sampled_from(["1", "yes", "zzz", "0"]))]
    _blend(scratch, frame, fmt, junk, test, target, id_col, options)


@fuzz(100)
@given(frame=raw_frames(), fmt=FORMATS, junk=JUNK, data=st.data())
def test_blend_raw_tables(scratch, frame, fmt, junk, data):
    target = choose_column(data.draw, str(frame.columns[0]) if len(frame.columns) else "y", frame)
    _blend(scratch, frame, fmt, junk, None, target, None, _options(data.draw))
