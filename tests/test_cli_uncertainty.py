import json

import numpy as np
import pandas as pd
import pytest
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
