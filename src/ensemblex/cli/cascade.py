"""``ensemblex cascade``: an early-exit cascade, its accuracy-cost front and operating point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import typer
from rich.table import Table as RichTable

from ensemblex.cascade import Cascade
from ensemblex.cli.app import app, console, fail
from ensemblex.runs import read_run
from ensemblex.store import write_json_atomic
from ensemblex.tables import read_table
from ensemblex.tasks import encode_labels


def read_costs(path: Path, members: list[str]) -> np.ndarray:
    """Costs per member from JSON ``{member: cost}`` or a CSV with ``member,cost`` columns."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        if path.suffix.lower() == ".json":
            costs = {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
        else:
            frame = pd.read_csv(path)
            if list(frame.columns[:2]) != ["member", "cost"]:
                raise ValueError(f"{path}: expected columns member,cost")
            costs = dict(zip(frame["member"].astype(str), frame["cost"].astype(float)))
    except (json.JSONDecodeError, pd.errors.ParserError, TypeError) as exc:
        raise ValueError(f"{path}: cannot read costs ({exc})") from None
    unknown = sorted(set(costs) - set(members))
    if unknown:
        raise ValueError(f"{path}: costs name unknown members {unknown}; members are {members}")
    missing = [m for m in members if m not in costs]
    if missing:
        raise ValueError(f"{path}: no cost for members {missing}")
    values = np.array([costs[m] for m in members])
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"{path}: costs must be finite and non-negative")
    return values


@app.command()
def cascade(
    source: Path = typer.Argument(..., help="A run folder, or OOF predictions (wide table)."),
    target: str | None = typer.Option(None, "--target", help="Target column (tables only)."),
    costs: Path | None = typer.Option(None, "--costs", help="JSON or CSV of cost per member."),
    target_accuracy: float | None = typer.Option(
        None, "--target-accuracy", help="Accuracy to reach (default: full ensemble - 0.1 pt)."
    ),
    target_risk: float | None = typer.Option(
        None, "--target-risk", help="Selective risk; keep the coverage at this risk."
    ),
    coverage: float | None = typer.Option(
        None,
        "--coverage",
        help="Coverage to reach at --target-risk (default: the full ensemble's).",
    ),
    rule: str = typer.Option("confidence", "--rule", help="confidence or window (binary)."),
    out: Path | None = typer.Option(None, "--out", help="Write the front and choice as JSON."),
) -> None:
    """Choose an early-exit threshold on OOF rows; print the front and the operating point."""
    try:
        result = _cascade(source, target, costs, target_accuracy, target_risk, coverage, rule)
        if out is not None:
            write_json_atomic(result, out)
    except (ValueError, TypeError, OSError) as exc:
        fail(str(exc))
    _print(result)


def _cascade(source, target, costs_path, target_accuracy, target_risk, coverage, rule) -> dict:
    test = weights = None
    if source.is_dir():
        run = read_run(source)
        oof, test = run.oof, run.test
        P = oof.predictions
        member_costs = run.member_costs()
        from ensemblex.ensemble import _Ensemble

        weights = getattr(_Ensemble.load(source / "model").combiner_, "weights_", None)
    else:
        if target is None:
            raise ValueError(f"{source}: --target is required for a predictions table")
        oof = read_table(source, target=target)
        P = oof.predictions
        member_costs = None
    if costs_path is not None:
        member_costs = read_costs(costs_path, list(P.members))
    if member_costs is None:
        raise ValueError(f"{source}: --costs is required for a predictions table")
    kind = "accuracy" if target_risk is None else "coverage_at_risk"
    model = Cascade(
        rule=rule,
        target=kind,
        risk=target_risk or 0.05,
        weights=weights,
        costs=member_costs,
        min_accuracy=target_accuracy,
        min_coverage=coverage,
    ).fit(P, oof.y)
    result = {
        "order": model.order_,
        "threshold": model.threshold_,
        "full_accuracy": model.full_accuracy_,
        "chosen": vars(model.chosen_),
        "front": [vars(p) for p in model.front_],
    }
    if test is not None and test.y is not None:
        output = model.predict(test.predictions)
        y = encode_labels(test.y, P.classes)
        full = model._stage_proba(test.predictions.values)[:, -1]
        result["test"] = {
            "accuracy": float(np.mean(output.proba.argmax(axis=1) == y)),
            "full_accuracy": float(np.mean(full.argmax(axis=1) == y)),
            "relative_cost": float(output.cost.mean() / model.stage_costs_[-1]),
        }
    return result


def _print(result: dict) -> None:
    table = RichTable(title="Accuracy-cost Pareto front (OOF rows)")
    for col in ("threshold", "relative cost", "accuracy"):
        table.add_column(col, justify="right")
    for p in result["front"]:
        table.add_row(f"{p['threshold']:.4f}", f"{p['relative_cost']:.3f}", f"{p['accuracy']:.4f}")
    console.print(table)
    c = result["chosen"]
    console.print(f"order: {', '.join(result['order'])}")
    console.print(
        f"chosen: threshold {c['threshold']:.4f}, relative cost {c['relative_cost']:.3f}, "
        f"OOF accuracy {c['accuracy']:.4f} (full ensemble {result['full_accuracy']:.4f})"
    )
    if "test" in result:
        t = result["test"]
        console.print(
            f"test: accuracy {t['accuracy']:.4f} (full ensemble {t['full_accuracy']:.4f})"
            f" at {t['relative_cost']:.1%} of the full ensemble's cost"
        )
