"""Fuzzing ``ensemblex cascade``: prediction tables with cost files, damaged run folders,
and its numeric options."""

from __future__ import annotations

import json

from fuzz_support import (
    FORMATS,
    JUNK,
    apply_damage,
    case_dir,
    check_outcome,
    copy_run,
    damages,
    fuzz,
    invoke,
    prediction_frames,
    run_files,
    snapshot,
    valid_json,
    write_table,
)
from hypothesis import given
from hypothesis import strategies as st

RISKS = st.sampled_from([None, None, None, "0.1", "0", "-1", "1", "2", "nan", "inf", "1e-9"])
LEVELS = st.sampled_from([None, None, None, "0.5", "0.9", "1.5", "-1", "nan", "0"])
RULES = st.sampled_from(["confidence", "confidence", "window", "bogus"])


def _options(draw) -> list[str]:
    options = ["--rule", draw(RULES)]
    for flag, values in (
        ("--target-risk", RISKS),
        ("--target-accuracy", LEVELS),
        ("--coverage", LEVELS),
    ):
        value = draw(values)
        if value is not None:
            options += [flag, value]
    return options


@st.composite
def cost_files(draw, members: list[str]):
    """``(suffix, bytes)`` of a cost file: mostly right, else damaged in one way."""
    costs = {m: draw(st.sampled_from([1.0, 0.5, 2.0, 1e-6])) for m in members}
    kind = draw(
        st.sampled_from(
            [
                "json",
                "json",
                "json",
                "csv",
                "list",
                "string",
                "negative",
                "nan",
                "unknown",
                "missing",
                "junk",
                "nested",
            ]
        )
    )
    if kind == "csv":
        lines = ["member,cost", *(f"{m},{c}" for m, c in costs.items())]
        return ".csv", "\n".join(lines).encode()
    if kind == "list":
        return ".json", json.dumps(list(costs.values())).encode()
    if kind == "string":
        return ".json", json.dumps("cheap").encode()
    if kind == "junk":
        return draw(st.sampled_from([".json", ".csv"])), draw(JUNK)
    if members and kind in ("negative", "nan", "missing", "nested"):
        victim = draw(st.sampled_from(members))
        if kind == "missing":
            del costs[victim]
        else:
            costs[victim] = {"negative": -1.0, "nan": float("nan"), "nested": {"a": 1}}[kind]
    if kind == "unknown":
        costs["no-such-member"] = 1.0
    return ".json", json.dumps(costs).encode()


def _cascade(source, folder, options, costs, changed=None):
    out = folder / "cascade.json"
    args = ["cascade", source, "--out", out, *options]
    if costs is not None:
        path = folder / f"costs{costs[0]}"
        path.write_bytes(costs[1])
        args += ["--costs", path]
    result = invoke(args)

    def valid():
        choice = valid_json(out)
        assert set(choice) >= {"order", "threshold", "chosen", "front"}
        assert choice["front"]

    return check_outcome(result, [out], valid, changed)


@fuzz(375)
@given(case=prediction_frames(), fmt=FORMATS, junk=JUNK, data=st.data())
def test_cascade_prediction_tables(scratch, case, fmt, junk, data):
    frame, target, id_col, members = case
    with case_dir(scratch) as folder:
        path = write_table(frame, folder, "oof", fmt, junk)
        options = _options(data.draw)
        target = data.draw(st.sampled_from([target] * 5 + [None, "nope"]))
        if target is not None:
            options += ["--target", target]
        if id_col is not None and data.draw(st.integers(0, 3)) > 0:
            options += ["--id", id_col]
        costs = data.draw(cost_files(list(dict.fromkeys(members))) | st.none())
        _cascade(path, folder, options, costs)


@fuzz(135)
@given(data=st.data())
def test_cascade_damaged_run_folders(scratch, churn_run, data):
    """Damage makes the command refuse (or, harmless, succeed); the folder is never written."""
    damage = data.draw(damages(run_files(churn_run)))
    with case_dir(scratch) as folder:
        run = copy_run(churn_run, folder)
        apply_damage(run, damage)
        before = snapshot(run)
        options = _options(data.draw)

        def unchanged():
            assert snapshot(run) == before

        costs = None
        if data.draw(st.integers(0, 3)) == 0:
            costs = data.draw(cost_files(["lgbm", "random_forest", "linear", "knn"]))
        _cascade(run, folder, options, costs, unchanged)
