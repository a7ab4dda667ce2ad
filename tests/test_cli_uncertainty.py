import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import mean_pinball_loss
from typer.testing import CliRunner

from ensemblex.cli import app
from ensemblex.tables import to_frame

runner = CliRunner()


def _table(P, y, path):
    frame = to_frame(P)
    frame.insert(0, "label", y)
    frame.to_csv(path, index=False)
    return path


def test_evaluate_classification_with_ood(multiclass_zoo, tmp_path):
    test = _table(multiclass_zoo.test, multiclass_zoo.y_test, tmp_path / "test.csv")
    rng = np.random.default_rng(0)
    noise = rng.dirichlet(np.ones(10), size=(100, multiclass_zoo.test.n_members))
    ood = to_frame(multiclass_zoo.test.take(np.arange(100))._replace(values=noise))
    ood.to_csv(tmp_path / "ood.csv", index=False)
    out = tmp_path / "metrics.json"
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(test),
            "--target",
            "label",
            "--ood",
            str(tmp_path / "ood.csv"),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert set(metrics["members"]) == {*multiclass_zoo.test.members, "ensemble (mean)"}
    assert {"ece", "aurc", "coverage_at_5pct_risk", "ood_auroc_max_probability"} <= set(
        metrics["members"]["forest"]
    )
    assert metrics["ensemble"]["ood"]["entropy"]["auroc"] > 0.9


def test_evaluate_regression_and_gaussian_members(regression_zoo, tmp_path):
    path = _table(regression_zoo.test, regression_zoo.y_test, tmp_path / "reg.csv")
    result = runner.invoke(app, ["evaluate", str(path), "--target", "label"])
    assert result.exit_code == 0, result.output
    assert "spread_skill_ratio" in result.output
    means = regression_zoo.test.values[:, :, 0]
    frame = pd.DataFrame({"label": regression_zoo.y_test})
    for j, m in enumerate(regression_zoo.test.members):
        frame[f"{m}:mean"] = means[:, j]
        frame[f"{m}:var"] = 3000.0
    frame.to_csv(tmp_path / "gauss.csv", index=False)
    out = tmp_path / "g.json"
    result = runner.invoke(
        app, ["evaluate", str(tmp_path / "gauss.csv"), "--target", "label", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert {"nll", "crps"} <= set(metrics["members"]["ensemble (mean)"])
    assert 0 < metrics["ensemble"]["interval_90"]["coverage"] <= 1
    y = regression_zoo.y_test.astype(float)
    for j, m in enumerate(regression_zoo.test.members):  # each member: a Gaussian's NLL
        nll = -stats.norm.logpdf(y, means[:, j], np.sqrt(3000.0)).mean()
        assert metrics["members"][m]["nll"] == pytest.approx(nll, rel=1e-9)
    mixture = stats.norm.pdf(y[:, None], means, np.sqrt(3000.0)).mean(axis=1)
    assert metrics["members"]["ensemble (mean)"]["nll"] == pytest.approx(
        -np.log(mixture).mean(), rel=1e-9
    )


def test_evaluate_quantile_members(regression_zoo, tmp_path):
    y = regression_zoo.y_test.astype(float)
    frame = pd.DataFrame({"row": np.arange(len(y)), "label": y})
    point = regression_zoo.test.values[:, :, 0]
    for j, m in enumerate(regression_zoo.test.members):
        for level, shift in (("q0.1", -40.0), ("q0.5", 0.0), ("q0.9", 40.0)):
            frame[f"{m}:{level}"] = point[:, j] + shift
    frame.to_csv(tmp_path / "q.csv", index=False)
    out = tmp_path / "q.json"
    args = ["evaluate", str(tmp_path / "q.csv"), "--target", "label", "--id", "row"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["ensemble"]["quantile_levels"] == [0.1, 0.5, 0.9]
    for j, m in enumerate(regression_zoo.test.members):
        ref = np.mean(
            [
                mean_pinball_loss(y, point[:, j] + shift, alpha=a)
                for a, shift in ((0.1, -40.0), (0.5, 0.0), (0.9, 40.0))
            ]
        )
        assert metrics["members"][m]["pinball"] == pytest.approx(ref, rel=1e-12)
        inside = np.abs(y - point[:, j]) <= 40.0
        assert metrics["members"][m]["interval_coverage"] == pytest.approx(inside.mean())


def test_evaluate_refuses_one_class_and_ambiguous_tables(tmp_path):
    one = pd.DataFrame({"label": [1, 1, 1], "a": [0.9, 0.8, 0.7]})
    one.to_csv(tmp_path / "one.csv", index=False)
    result = runner.invoke(app, ["evaluate", str(tmp_path / "one.csv"), "--target", "label"])
    assert result.exit_code == 2
    assert "the target column 'label' has one value (1)" in " ".join(result.output.split())
    grades = pd.DataFrame({"label": [0, 2, 1, 2], "a": [0.1, 0.9, 0.5, 0.8]})
    grades.to_csv(tmp_path / "grades.csv", index=False)
    args = ["evaluate", str(tmp_path / "grades.csv"), "--target", "label"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "ambiguous" in result.output
    out = tmp_path / "grades.json"
    result = runner.invoke(app, [*args, "--task", "regression", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rmse = np.sqrt(np.mean((grades["a"] - grades["label"]) ** 2))
    assert json.loads(out.read_text())["members"]["a"]["rmse"] == pytest.approx(rmse)


def test_cascade_on_a_predictions_table(multiclass_zoo, tmp_path):
    oof = _table(multiclass_zoo.oof, multiclass_zoo.y, tmp_path / "oof.csv")
    costs = {m: float(i + 1) for i, m in enumerate(multiclass_zoo.oof.members)}
    (tmp_path / "costs.json").write_text(json.dumps(costs))
    out = tmp_path / "cascade.json"
    result = runner.invoke(
        app,
        [
            "cascade",
            str(oof),
            "--target",
            "label",
            "--costs",
            str(tmp_path / "costs.json"),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    chosen = json.loads(out.read_text())["chosen"]
    assert chosen["relative_cost"] <= 1.0 and "Pareto front" in result.output


@pytest.mark.parametrize("case", ["unknown_member", "nan", "simplex", "ood_members", "no_costs"])
def test_bad_input_exits_2_with_one_line(multiclass_zoo, tmp_path, case):
    P, y = multiclass_zoo.oof, multiclass_zoo.y
    oof = _table(P, y, tmp_path / "oof.csv")
    frame = pd.read_csv(oof)
    if case == "unknown_member":
        (tmp_path / "costs.json").write_text(json.dumps({"ghost": 1.0}))
        args = ["cascade", str(oof), "--target", "label", "--costs", str(tmp_path / "costs.json")]
        message = "costs name unknown members ['ghost']"
    elif case == "no_costs":
        args = ["cascade", str(oof), "--target", "label"]
        message = "--costs is required"
    elif case == "nan":
        frame.loc[3, "forest:0"] = np.nan
        frame.to_csv(tmp_path / "bad.csv", index=False)
        args = ["evaluate", str(tmp_path / "bad.csv"), "--target", "label"]
        message = "column 'forest:0' has NaN or inf at row 3"
    elif case == "simplex":
        frame["forest:0"] = frame["forest:0"] * 0.5
        frame.to_csv(tmp_path / "bad.csv", index=False)
        args = ["evaluate", str(tmp_path / "bad.csv"), "--target", "label"]
        message = "member 'forest' has probabilities summing to"
    else:
        frame.drop(columns=[c for c in frame.columns if c.startswith("knn:")]).to_csv(
            tmp_path / "ood.csv", index=False
        )
        args = ["evaluate", str(oof), "--target", "label", "--ood", str(tmp_path / "ood.csv")]
        message = "member 'knn' of the out-of-fold table is missing here"
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert message in text and "Traceback" not in text


@pytest.mark.parametrize("risk", ["0", "-1", "1", "nan"])
def test_cascade_target_risk_outside_0_1_is_refused(multiclass_zoo, tmp_path, risk):
    """Never silently replaced by a default: the risk used is the risk asked."""
    oof = _table(multiclass_zoo.oof, multiclass_zoo.y, tmp_path / "oof.csv")
    costs = {m: 1.0 for m in multiclass_zoo.oof.members}
    (tmp_path / "costs.json").write_text(json.dumps(costs))
    out = tmp_path / "cascade.json"
    args = ["cascade", str(oof), "--target", "label", "--costs", str(tmp_path / "costs.json")]
    result = runner.invoke(app, [*args, "--target-risk", risk, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "--target-risk must be in (0, 1)" in " ".join(result.output.split())
    assert not out.exists()
    result = runner.invoke(app, [*args, "--target-risk", "0.1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    settings = json.loads(out.read_text())["settings"]
    assert settings["target_risk"] == 0.1 and settings["target"] == "coverage_at_risk"


def test_evaluate_prints_tables_that_fit_80_columns(multiclass_zoo, tmp_path, monkeypatch):
    """Every metric whole at 80 columns (split over tables when needed), 4 significant
    digits, and the ensemble's summary as a table rather than raw dicts."""
    from ensemblex.cli.app import console
    from ensemblex.report.numbers import format_number

    monkeypatch.setattr(console, "_width", 80)
    test = _table(multiclass_zoo.test, multiclass_zoo.y_test, tmp_path / "test.csv")
    rng = np.random.default_rng(0)
    noise = rng.dirichlet(np.ones(10), size=(100, multiclass_zoo.test.n_members))
    ood = to_frame(multiclass_zoo.test.take(np.arange(100))._replace(values=noise))
    ood.to_csv(tmp_path / "ood.csv", index=False)
    out = tmp_path / "metrics.json"
    args = ["evaluate", str(test), "--target", "label", "--ood", str(tmp_path / "ood.csv")]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "…" not in text and "{" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    metrics = json.loads(out.read_text())
    for scores in metrics["members"].values():
        for value in scores.values():
            assert format_number(value, 4) in text
    assert "ood / entropy / auroc" in text
    assert format_number(metrics["ensemble"]["ood"]["entropy"]["auroc"], 4) in text
