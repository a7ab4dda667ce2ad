"""Fuzzing ``ensemblex evaluate``: generated prediction tables and raw tables."""

from __future__ import annotations

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


def _evaluate(scratch, table, fmt, junk, target, id_col, task, ood):
    with case_dir(scratch) as folder:
        path = write_table(table, folder, "preds", fmt, junk)
        out = folder / "sub" / "metrics.json"
        args = ["evaluate", path, "--task", task, "--out", out]
        if target is not None:
            args += ["--target", target]
        if id_col is not None:
            args += ["--id", id_col]
        if ood is not None:
            args += ["--ood", write_table(ood, folder, "ood", "csv")]
        result = invoke(args)

        def valid():
            metrics = valid_json(out)
            assert set(metrics) >= {"task", "members", "ensemble"}

        return check_outcome(result, [out], valid)


@fuzz(410)
@given(case=prediction_frames(), fmt=FORMATS, junk=JUNK, task=TASKS, data=st.data())
def test_evaluate_prediction_tables(scratch, case, fmt, junk, task, data):
    frame, target, id_col, _ = case
    target = data.draw(st.sampled_from([target] * 4 + [None, "nope"]))
    id_col = choose_column(data.draw, id_col, frame) if id_col else None
    ood = None
    if data.draw(st.integers(0, 5)) == 0:
        ood = data.draw(prediction_frames())[0].drop(columns=["target"], errors="ignore")
    _evaluate(scratch, frame, fmt, junk, target, id_col, task, ood)


@fuzz(100)
@given(frame=raw_frames(), fmt=FORMATS, junk=JUNK, task=TASKS, data=st.data())
def test_evaluate_raw_tables(scratch, frame, fmt, junk, task, data):
    target = choose_column(data.draw, str(frame.columns[0]) if len(frame.columns) else "y", frame)
    _evaluate(scratch, frame, fmt, junk, target, None, task, None)
