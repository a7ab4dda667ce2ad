"""Choosing an early-exit cascade for a run folder or a predictions table (``ensemblex
cascade``): member costs, the threshold on OOF rows, and the test rows' accuracy and cost."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ensemblex.cascade import Cascade
from ensemblex.combiners.base import mixture_weights
from ensemblex.runs import RunFolder
from ensemblex.tables import read_table
from ensemblex.tasks import encode_labels


def read_costs(path: Path, members: list[str]) -> np.ndarray:
    """Costs per member from JSON ``{member: cost}`` or a CSV with ``member,cost`` columns."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        if path.suffix.lower() == ".json":
            raw = json.loads(path.read_text())
            if not isinstance(raw, dict):
                raise ValueError(f"{path}: expected a JSON object {{member: cost}}")
            costs = {str(k): float(v) for k, v in raw.items()}
        else:
            frame = pd.read_csv(path)
            if list(frame.columns[:2]) != ["member", "cost"]:
                raise ValueError(f"{path}: expected columns member,cost")
            costs = dict(zip(frame["member"].astype(str), frame["cost"].astype(float)))
    except (json.JSONDecodeError, pd.errors.ParserError, TypeError, UnicodeDecodeError) as exc:
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


def choose_cascade(
    source,
    *,
    target: str | None = None,
    id_col: str | None = None,
    costs=None,
    rule: str = "confidence",
    target_accuracy: float | None = None,
    target_risk: float | None = None,
    coverage: float | None = None,
) -> dict:
    """Fit a cascade on the OOF rows of a run folder or a predictions table.

    Parameters
    ----------
    source : path
        A run folder (costs: measured predict times; weights: the chosen combiner's) or a
        wide OOF table (``target`` and ``costs`` required; ``id_col``, an id column to ignore).
    costs : path, optional
        JSON or CSV of cost per member (see :func:`read_costs`); overrides a run's.
    rule, target_accuracy, target_risk, coverage
        As :class:`ensemblex.cascade.Cascade`; ``target_risk`` chooses the coverage target.

    Returns
    -------
    dict
        ``order``, ``threshold``, ``full_accuracy``, ``chosen``, ``front`` and, for a run
        folder, ``test`` (accuracy, full ensemble's accuracy, relative cost on test rows).
    """
    source = Path(source)
    test = weights = member_costs = None
    if source.is_dir():
        run = RunFolder(source)
        oof, test = run.oof, run.test
        member_costs = run.member_costs()
        weights = mixture_weights(run.load_model().combiner_)
    else:
        if target is None:
            raise ValueError(f"{source}: --target is required for a predictions table")
        oof = read_table(source, target=target, id_col=id_col)
    P = oof.predictions
    if costs is not None:
        member_costs = read_costs(costs, list(P.members))
    if member_costs is None:
        raise ValueError(f"{source}: --costs is required for a predictions table")
    if target_risk is not None and not 0 < target_risk < 1:
        raise ValueError(f"--target-risk must be in (0, 1), however: {target_risk}")
    model = Cascade(
        rule=rule,
        target="accuracy" if target_risk is None else "coverage_at_risk",
        risk=0.05 if target_risk is None else target_risk,
        weights=weights,
        costs=member_costs,
        min_accuracy=target_accuracy,
        min_coverage=coverage,
    ).fit(P, oof.y)
    result = {
        # the settings used, as asked (none is replaced by a default silently)
        "settings": {
            "rule": rule,
            "target": model.target,
            "target_risk": target_risk,
            "target_accuracy": target_accuracy,
            "coverage": coverage,
        },
        "order": model.order_,
        "threshold": model.threshold_,
        "full_accuracy": model.full_accuracy_,
        "chosen": vars(model.chosen_),
        "front": [vars(p) for p in model.front_],
    }
    if test is not None and test.y is not None:
        output = model.predict(test.predictions)
        y = encode_labels(test.y, P.classes)
        full = model.stage_probabilities(test.predictions.values)[:, -1]
        result["test"] = {
            "accuracy": float(np.mean(output.proba.argmax(axis=1) == y)),
            "full_accuracy": float(np.mean(full.argmax(axis=1) == y)),
            "relative_cost": float(output.cost.mean() / model.stage_costs_[-1]),
        }
    return result
