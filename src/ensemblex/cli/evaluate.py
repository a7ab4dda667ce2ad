"""``ensemblex evaluate``: every uncertainty metric for each member and for the ensemble."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import typer
from rich.table import Table as RichTable

from ensemblex.cli.app import app, console, fail
from ensemblex.metrics import calibration, diversity, get_metric, ood, probabilistic, selective
from ensemblex.predictions import Predictions
from ensemblex.store import write_json_atomic
from ensemblex.tables import read_table
from ensemblex.tasks import encode_labels

ENSEMBLE = "ensemble (mean)"


def classification_metrics(proba: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Scores, calibration and selective prediction of one prediction (n, k)."""
    out = {
        name: get_metric(name, "multiclass").score(y, proba)
        for name in ("log_loss", "accuracy", "brier")
    }
    out["ece"] = calibration.expected_calibration_error(proba, y)
    out["adaptive_ece"] = calibration.expected_calibration_error(proba, y, strategy="quantile")
    out["aurc"] = selective.aurc(proba, y)
    out["coverage_at_5pct_risk"] = selective.coverage_at_risk(proba, y, 0.05)
    out["risk_at_80pct_coverage"] = selective.risk_at_coverage(proba, y, 0.8)
    return out


def evaluate_classification(P: Predictions, y, P_ood: Predictions | None) -> dict:
    codes = encode_labels(y, P.classes)
    rows = {m: classification_metrics(P.values[:, j], codes) for j, m in enumerate(P.members)}
    rows[ENSEMBLE] = classification_metrics(P.values.mean(axis=1), codes)
    ambiguity = diversity.ambiguity_decomposition(P.values, codes, "cross_entropy")
    disagreement = diversity.pairwise_disagreement(P.values)
    m = P.n_members
    summary = {
        "mean_pairwise_disagreement": float(disagreement.sum() / max(m * (m - 1), 1)),
        "ambiguity_cross_entropy": vars(ambiguity),
    }
    if P_ood is not None:
        detections = {}
        for name, score in ood.OOD_SCORES.items():
            detections[name] = vars(ood.detection_metrics(score(P.values), score(P_ood.values)))
        summary["ood"] = detections
        for j, member in enumerate(P.members):
            single = ood.detection_metrics(
                ood.max_probability_score(P.values[:, j : j + 1]),
                ood.max_probability_score(P_ood.values[:, j : j + 1]),
            )
            rows[member]["ood_auroc_max_probability"] = single.auroc
        rows[ENSEMBLE]["ood_auroc_max_probability"] = detections["max_probability"]["auroc"]
    return {"members": rows, "ensemble": summary}


def evaluate_regression(
    means: np.ndarray, y: np.ndarray, names: list[str], variances: np.ndarray | None
) -> dict:
    def scores(pred, var=None):
        out = {
            name: get_metric(name, "regression").score(y, pred[:, None])
            for name in ("rmse", "mae", "r2")
        }
        if var is not None:
            out["nll"] = probabilistic.mixture_nll(pred[:, None], var[:, None], y)
            out["crps"] = probabilistic.mixture_crps(pred[:, None], var[:, None], y)
        return out

    rows = {
        m: scores(means[:, j], None if variances is None else variances[:, j])
        for j, m in enumerate(names)
    }
    rows[ENSEMBLE] = scores(means.mean(axis=1))
    summary = {
        "ambiguity_squared_error": vars(diversity.ambiguity_decomposition(means, y)),
        "mean_error_correlation": float(_off_diagonal_mean(diversity.error_correlation(means, y))),
        "spread_skill_ratio": probabilistic.spread_skill_ratio(means, y),
        "rank_histogram": probabilistic.rank_histogram(means, y).tolist(),
    }
    if variances is not None:
        rows[ENSEMBLE]["nll"] = probabilistic.mixture_nll(means, variances, y)
        rows[ENSEMBLE]["crps"] = probabilistic.mixture_crps(means, variances, y)
        interval = probabilistic.interval_coverage(means, variances, y, 0.9)
        summary["interval_90"] = vars(interval)
    return {"members": rows, "ensemble": summary}


def _off_diagonal_mean(matrix: np.ndarray) -> float:
    m = len(matrix)
    return (matrix.sum() - np.trace(matrix)) / max(m * (m - 1), 1)


def read_probabilistic(path: Path, target: str):
    """A table of ``<member>:mean`` and ``<member>:var`` columns, or None if it is not one."""
    frame = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)
    columns = [c for c in frame.columns if c != target]
    parts = [str(c).rpartition(":") for c in columns]
    if not parts or any(p[1] != ":" or p[2] not in ("mean", "var") for p in parts):
        return None
    names = list(dict.fromkeys(p[0] for p in parts))
    for name in names:
        for part in ("mean", "var"):
            if f"{name}:{part}" not in frame.columns:
                raise ValueError(f"{path}: member {name!r} has no column '{name}:{part}'")
    if target not in frame.columns:
        raise ValueError(f"{path}: unknown target column {target!r}")
    table = frame[[f"{n}:{p}" for p in ("mean", "var") for n in names]].to_numpy(float)
    if not np.all(np.isfinite(table)):
        raise ValueError(f"{path}: NaN or inf among the member columns")
    means, variances = table[:, : len(names)], table[:, len(names) :]
    if np.any(variances <= 0):
        raise ValueError(f"{path}: ':var' columns must be positive")
    return names, means, variances, frame[target].to_numpy(dtype=float)


@app.command()
def evaluate(
    predictions: Path = typer.Argument(..., help="Member predictions with the target (wide)."),
    target: str = typer.Option(..., "--target", help="Target column."),
    ood_predictions: Path | None = typer.Option(
        None, "--ood", help="The same members' predictions on out-of-distribution rows."
    ),
    out: Path | None = typer.Option(None, "--out", help="Write every metric as JSON here."),
) -> None:
    """Score calibration, selective prediction, OOD detection and diversity.

    Classification: one probability column per member (binary) or '<member>:<class>'.
    Regression: one column per member, or '<member>:mean' and '<member>:var' columns for
    members that predict a Gaussian.
    """
    try:
        result = _evaluate(predictions, target, ood_predictions)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(result, out)
    except (ValueError, TypeError, OSError) as exc:
        fail(str(exc))
    _print(result)
    if out is not None:
        console.print(f"wrote {out}")


def _evaluate(path: Path, target: str, ood_path: Path | None) -> dict:
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    probabilistic_table = read_probabilistic(path, target)
    if probabilistic_table is not None:
        names, means, variances, y = probabilistic_table
        return {"task": "regression", **evaluate_regression(means, y, names, variances)}
    table = read_table(path, target=target)
    P = table.predictions
    if P.task == "regression":
        if ood_path is not None:
            raise ValueError(f"{ood_path}: --ood is for classification predictions")
        return {
            "task": "regression",
            **evaluate_regression(P.values[:, :, 0], table.y.astype(float), list(P.members), None),
        }
    P_ood = None
    if ood_path is not None:
        P_ood = read_table(
            ood_path, target=target, task=P.task, classes=P.classes, members=list(P.members)
        ).predictions
    return {"task": P.task, **evaluate_classification(P, table.y, P_ood)}


def _print(result: dict) -> None:
    rows = result["members"]
    columns = list(next(iter(rows.values())))
    table = RichTable(title=f"Evaluation ({result['task']})")
    table.add_column("member")
    for col in columns:
        table.add_column(col, justify="right")
    for name, scores in rows.items():
        table.add_row(name, *(f"{scores.get(c, float('nan')):.4f}" for c in columns))
    console.print(table)
    for key, value in result["ensemble"].items():
        console.print(f"{key}: {value}")
