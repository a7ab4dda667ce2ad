"""Fuzzing ``ensemblex predict``: generated input tables through a saved run, and damaged
run folders (truncated, flipped, edited, resealed, symlinked, traversal paths)."""

from __future__ import annotations

import pandas as pd
from fuzz_support import (
    CELLS,
    FORMATS,
    JUNK,
    TEXT,
    apply_damage,
    case_dir,
    check_outcome,
    copy_run,
    damages,
    frame_of,
    fuzz,
    invoke,
    raw_frames,
    run_files,
    snapshot,
    valid_json,
    write_table,
)
from hypothesis import given
from hypothesis import strategies as st

from ensemblex.cli.app import example_path

CHURN = pd.read_csv(example_path("churn_modelling.csv")).head(20)


@st.composite
def churn_rows(draw):
    """Rows of the training schema, damaged: cells of another type, NaN/inf, unseen
    categories, dropped, renamed, duplicated or extra columns, no rows."""
    n = draw(st.sampled_from([1, 3, 20]))
    names = list(CHURN.columns)
    values = [CHURN[c].head(n).tolist() for c in names]
    for _ in range(draw(st.integers(0, 3))):
        j = draw(st.integers(0, len(names) - 1)) % len(names)
        kind = draw(st.sampled_from(["cell", "column", "drop", "rename", "dup", "extra", "empty"]))
        if kind == "cell" and values[j]:
            values[j][draw(st.integers(0, 19)) % len(values[j])] = draw(CELLS)
        elif kind == "column":
            values[j] = [draw(CELLS)] * len(values[j])
        elif kind == "drop" and len(names) > 1:
            del names[j], values[j]
        elif kind == "rename":
            names[j] = draw(TEXT)
        elif kind == "dup":
            names.append(names[j])
            values.append(list(values[j]))
        elif kind == "extra":
            names.append(draw(TEXT) or "extra")
            values.append([draw(CELLS)] * len(values[0]))
        elif kind == "empty":
            values = [v[:0] for v in values]
    return frame_of(names, values)


def _predict(run, data: pd.DataFrame | None, path, folder, changed=None):
    out = folder / "outdir" / "predictions.csv"
    out.parent.mkdir()
    sidecar = out.with_name(out.name + ".json")
    result = invoke(["predict", run, path, "--out", out])

    def valid():
        predictions = pd.read_csv(out)
        notes = valid_json(sidecar)
        assert notes["rows"] == len(predictions)
        if data is not None:
            assert len(predictions) == len(data)
        assert "prediction" in predictions.columns

    return check_outcome(result, [out, sidecar], valid, changed)


@fuzz(360)
@given(data=st.data(), fmt=FORMATS, junk=JUNK)
def test_predict_input_tables(scratch, cheap_run, data, fmt, junk):
    frame = data.draw(churn_rows() | raw_frames())
    with case_dir(scratch) as folder:
        path = write_table(frame, folder, "rows", fmt, junk)
        known = frame if fmt in ("csv", "csv.gz") else None
        _predict(cheap_run, known, path, folder)


@fuzz(150)
@given(data=st.data())
def test_predict_damaged_run_folders(scratch, churn_run, data):
    damage = data.draw(damages(run_files(churn_run)))
    with case_dir(scratch) as folder:
        run = copy_run(churn_run, folder)
        apply_damage(run, damage)
        before = snapshot(run)
        path = write_table(CHURN.head(5), folder, "rows", "csv")

        def unchanged():
            assert snapshot(run) == before

        _predict(run, CHURN.head(5), path, folder, unchanged)
