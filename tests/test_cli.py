import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ensemblex.cli import app
from ensemblex.tables import to_frame

runner = CliRunner()


def _write(zoo, tmp_path, fmt="csv"):
    oof = to_frame(zoo.oof)
    oof.insert(0, "label", zoo.y)
    oof.insert(0, "key", np.arange(len(oof)))
    test = to_frame(zoo.test)
    test.insert(0, "key", np.arange(len(test)) + 10_000)
    paths = tmp_path / f"oof.{fmt}", tmp_path / f"test.{fmt}"
    for frame, path in zip((oof, test), paths):
        frame.to_parquet(path) if fmt == "parquet" else frame.to_csv(path, index=False)
    return paths


def test_bundled_example_runs_with_no_arguments(tmp_path):
    result = runner.invoke(app, ["blend", "--out", str(tmp_path / "out"), "--folds", "3"])
    assert result.exit_code == 0, result.output
    assert "best single member" in result.output
    summary = json.loads((tmp_path / "out" / "blend.json").read_text())
    assert summary["task"] == "binary"
    assert set(summary["nested_cv_scores"]) >= {"best", "mean", "greedy", "stack"}
    assert "test_score" in summary
    preds = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert list(preds.columns) == ["row", "prediction"] and len(preds) == 2000


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_blend_writes_predictions_for_test_rows(zoo, tmp_path, fmt):
    oof, test = _write(zoo, tmp_path, fmt)
    out = tmp_path / "out"
    args = ["blend", str(oof), "--target", "label", "--test", str(test), "--id", "key"]
    result = runner.invoke(app, [*args, "--out", str(out), "--folds", "3"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "blend.json").read_text())
    assert summary["task"] == zoo.oof.task
    assert summary["method"] in summary["nested_cv_scores"]
    preds = pd.read_csv(out / "predictions.csv")
    assert preds["key"].tolist() == list(range(10_000, 10_000 + zoo.test.n_samples))
    if zoo.oof.task == "multiclass":
        assert list(preds.columns[1:]) == [str(c) for c in zoo.oof.classes]
        np.testing.assert_allclose(preds.iloc[:, 1:].sum(axis=1), 1.0, atol=1e-9)
    else:
        assert list(preds.columns) == ["key", "prediction"]


def test_blend_time_limit_keeps_the_best_member_and_names_what_it_skipped(binary_zoo, tmp_path):
    oof, test = _write(binary_zoo, tmp_path)
    out = tmp_path / "out"
    args = ["blend", str(oof), "--target", "label", "--test", str(test), "--id", "key"]
    result = runner.invoke(app, [*args, "--time-limit", "0.001", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "blend.json").read_text())
    assert list(summary["nested_cv_scores"]) in (["best"], ["best", "ensemble"])
    assert summary["method"] == "best"
    assert "stack" in summary["skipped_by_time_limit"]
    result = runner.invoke(app, [*args, "--time-limit", "0", "--out", str(tmp_path / "bad")])
    assert result.exit_code == 2


def test_blend_per_fold_test_tables(multiclass_zoo, tmp_path):
    oof, _ = _write(multiclass_zoo, tmp_path)
    rng = np.random.default_rng(0)
    parts = []
    for k in range(3):
        noisy = multiclass_zoo.test.values + rng.uniform(0, 0.1, multiclass_zoo.test.shape)
        frame = to_frame(
            type(multiclass_zoo.test)(
                noisy / noisy.sum(axis=2, keepdims=True),
                multiclass_zoo.test.members,
                "multiclass",
                classes=multiclass_zoo.test.classes,
            )
        )
        frame.insert(0, "key", np.arange(len(frame)) + 10_000)
        frame.insert(0, "fold", k)
        parts.append(frame)
    stacked = tmp_path / "folds.csv"
    pd.concat(parts).to_csv(stacked, index=False)
    out = tmp_path / "out"
    args = ["blend", str(oof), "--target", "label", "--id", "key", "--method", "pool"]
    result = runner.invoke(app, [*args, "--test", str(stacked), "--out", str(out), "--folds", "3"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "blend.json").read_text())
    assert summary["test_folds"] == 3
    preds = pd.read_csv(out / "predictions.csv")
    assert preds["key"].tolist() == list(range(10_000, 10_000 + multiclass_zoo.test.n_samples))
    # a fold whose rows differ is refused, naming it
    parts[2]["key"] = parts[2]["key"][::-1].to_numpy()
    pd.concat(parts).to_csv(stacked, index=False)
    result = runner.invoke(app, [*args, "--test", str(stacked), "--out", str(tmp_path / "bad")])
    assert result.exit_code == 2
    assert "(fold 2)" in result.output and "'key' column differs" in result.output
    assert not (tmp_path / "bad").exists()
    short = tmp_path / "short.csv"
    parts[1].drop(columns="fold").iloc[:-1].to_csv(short, index=False)
    first = tmp_path / "first.csv"
    parts[0].drop(columns="fold").to_csv(first, index=False)
    two = ["--test", str(first), "--test", str(short)]
    result = runner.invoke(app, [*args, *two, "--out", str(tmp_path / "bad")])
    assert result.exit_code == 2 and "every fold must predict the same rows" in result.output


@pytest.mark.parametrize("method", ["mean", "best", "weighted", "greedy", "pool", "stack"])
def test_each_method(binary_zoo, tmp_path, method):
    oof, _ = _write(binary_zoo, tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "blend",
            str(oof),
            "--target",
            "label",
            "--id",
            "key",
            "--method",
            method,
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "blend.json").read_text())
    assert summary["method"] == method
    assert set(summary["nested_cv_scores"]) == {method, "best"}
    assert len(pd.read_csv(out / "predictions.csv")) == binary_zoo.oof.n_samples


def test_metric_option(regression_zoo, tmp_path):
    oof, _ = _write(regression_zoo, tmp_path)
    out = tmp_path / "out"
    args = ["blend", str(oof), "--target", "label", "--id", "key", "--metric", "mae"]
    result = runner.invoke(app, [*args, "--method", "greedy", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "blend.json").read_text())["metric"] == "mae"


# ---------------------------------------------------------------- bad input
def _bad_inputs(tmp_path):
    good = pd.DataFrame(
        {
            "y": [0, 1, 0, 1, 1, 0],
            "a": [0.1, 0.9, 0.3, 0.6, 0.7, 0.2],
            "b": [0.2, 0.7, 0.1, 0.8, 0.9, 0.4],
        }
    )
    cases = {
        "nan": (good.assign(a=[0.1, np.nan, 0.3, 0.6, 0.7, 0.2]), "column 'a' has NaN"),
        "inf": (good.assign(b=[0.2, 0.7, np.inf, 0.8, 0.9, 0.4]), "column 'b' has NaN or inf"),
        "range": (
            good.assign(a=[0.1, 1.2, 0.3, 0.6, 0.7, 0.2]),
            "column 'a' has 1.2 at row 1; expected probabilities",
        ),
        "empty": (good.iloc[:0], "the table has no rows"),
        "classes": (
            pd.DataFrame({"y": ["p", "q", "r"], "a:p": [1.0, 0, 0], "a:q": [0, 1.0, 1.0]}),
            "target classes ['r'] are named by no member column",
        ),
        "simplex": (
            pd.DataFrame({"y": ["p", "q", "q"], "a:p": [0.5, 0, 0], "a:q": [0.2, 1.0, 1.0]}),
            "member 'a' has probabilities summing to 0.7",
        ),
    }
    for name, (frame, message) in cases.items():
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
        yield tmp_path / f"{name}.csv", ["--target", "y"], f"{name}.csv: {message}"
    good.to_csv(tmp_path / "good.csv", index=False)
    yield tmp_path / "good.csv", ["--target", "label"], "good.csv: unknown target column 'label'"
    yield (
        tmp_path / "good.csv",
        ["--target", "y", "--id", "key"],
        "good.csv: unknown id column 'key'",
    )
    good[["a"]].to_csv(tmp_path / "test_missing.csv", index=False)
    yield (
        tmp_path / "good.csv",
        ["--target", "y", "--test", str(tmp_path / "test_missing.csv")],
        ("test_missing.csv: member 'b' of the out-of-fold table is missing"),
    )
    good.assign(c=0.5).drop(columns="y").to_csv(tmp_path / "test_extra.csv", index=False)
    yield (
        tmp_path / "good.csv",
        ["--target", "y", "--test", str(tmp_path / "test_extra.csv")],
        ("test_extra.csv: member 'c' is not in the out-of-fold table"),
    )
    (tmp_path / "dup.csv").write_text("y,a,a\n0,0.1,0.2\n1,0.9,0.8\n")
    yield tmp_path / "dup.csv", ["--target", "y"], "dup.csv: duplicate column names"
    (tmp_path / "blank.csv").write_text("")
    yield tmp_path / "blank.csv", ["--target", "y"], "blank.csv: the file is empty"
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 not really")
    yield tmp_path / "junk.parquet", ["--target", "y"], "junk.parquet: cannot read"
    yield tmp_path / "missing.csv", ["--target", "y"], "missing.csv: no such file"


def test_bad_input_gives_one_line_exit_2_and_writes_nothing(tmp_path):
    for path, args, message in _bad_inputs(tmp_path):
        out = tmp_path / "out"
        result = runner.invoke(app, ["blend", str(path), *args, "--out", str(out)])
        assert result.exit_code == 2, (path, result.output)
        text = " ".join(result.output.split())
        assert message in text, (path, text)
        assert "Traceback" not in result.output
        assert not out.exists(), path


# ---------------------------------------------------------------- terminal tables
def _leaderboard_at(width: int, summary: dict) -> str:
    from rich.console import Console

    from ensemblex.cli import display

    console = Console(width=width, record=True, markup=False, emoji=False)
    original = display.console
    display.console = console
    try:
        display.print_leaderboard(summary)
    finally:
        display.console = original
    return console.export_text()


def _regression_summary():
    names = ["stack_regularized", "lightgbm_with_a_very_long_member_name", "random_forest"]
    rows = [
        {
            "model": name,
            "kind": "combiner (chosen)" if i == 0 else "member",
            "cv_score": 27031.12345 + i,
            "test_score": 0.000123456 if i == 2 else 123456789.5,
            "fit_seconds": 12.3456,
            "predict_seconds_per_row": None if i == 0 else 4.2e-5,
        }
        for i, name in enumerate(names)
    ]
    return {"metric": "rmse", "greater_is_better": False, "leaderboard": rows}


@pytest.mark.parametrize("width", [80, 200])
def test_leaderboard_numbers_are_never_cut(width):
    """At 80 columns every number is whole (names wrap instead), by significant digits."""
    text = _leaderboard_at(width, _regression_summary())
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    for number in ("27031", "27032", "27033", "123456790", "0.00012346", "12.3", "42.0"):
        assert number in text, number
    assert "27031.12345" not in text  # 5 significant digits, not 5 decimals
    # a long name is folded onto more lines of its column, whole
    model_cells = "".join(
        line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│")
    )
    assert "lightgbm_with_a_very_long_member_name" in model_cells


def test_format_number_reads_like_the_leaderboard():
    from ensemblex.report.numbers import format_number

    assert format_number(27031.12345) == "27031"
    assert format_number(0.3324219) == "0.33242"
    assert format_number(0.05123456) == "0.051235"
    assert format_number(-1.5) == "-1.5000"
    assert format_number(123456789.5) == "123456790"
    assert format_number(1.234e-7) == "1.2340e-07"
    assert format_number(float("nan")) == "nan" and format_number(None) == ""


def test_the_cli_starts_without_the_numerical_stack():
    """`ensemblex --help` stays light: the commands import their libraries when they run."""
    import subprocess
    import sys

    code = (
        "import sys, ensemblex.cli; "
        "print(sorted(m for m in ('sklearn', 'pandas', 'scipy', 'lightgbm', 'matplotlib', "
        "'fastapi', 'torch') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
