"""Benchmark early-exit cascades: full-ensemble quality at a fraction of its cost.

    .venv/bin/python bench/cascade.py

Reuses the cross-fitted default zoo of bench/run.py (bench/.cache/run/<dataset>; it is built
if missing). The full ensemble is greedy selection over the members (its weights decide who
runs at all); each member's cost is its measured prediction time per row on the test split
(preprocessing plus its five fold models). Cascades are fitted on the OOF rows only, then:

- letter recognition (multiclass): confidence cascade, target = full ensemble's OOF accuracy
  minus 0.1 point; report test accuracy of both and the cascade's share of the full cost;
- adult and churn (binary): window cascade around the 0.5 decision threshold, target = the
  full ensemble's coverage at 5% selective risk; report test coverage of both and cost share.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from ensemblex.cascade import Cascade
from ensemblex.ensemble import EnsembleClassifier
from ensemblex.members.families import predict_outputs
from ensemblex.metrics.selective import coverage_at_risk
from ensemblex.tasks import encode_labels

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zoo import CACHE, load_dataset


def member_costs(model: EnsembleClassifier, X, weights) -> np.ndarray:
    """Seconds per row to predict with each member (all of its fold models), best of 3;
    members the ensemble gives no weight never run and are not timed."""
    X = model.schema_.check(X)
    costs = []
    for folds, weight in zip(model._models, weights):
        if weight == 0:
            costs.append(0.0)
            continue
        best = np.inf
        for _ in range(3):
            start = time.perf_counter()
            for preprocessor, fold_model in folds:
                predict_outputs(fold_model, preprocessor.transform(X), model.task_)
            best = min(best, time.perf_counter() - start)
        costs.append(best / len(X))
    return np.asarray(costs)


def run_dataset(name: str) -> dict:
    ds = load_dataset(name)
    X, y = ds.train.drop(columns=ds.target), ds.train[ds.target].to_numpy()
    X_test, y_test = ds.test.drop(columns=ds.target), ds.test[ds.target].to_numpy()
    model = EnsembleClassifier(
        members="default", combiner="greedy", cv=5, random_state=0, work_dir=CACHE / "run" / name
    ).fit(X, y)
    costs = member_costs(model, X_test, model.combiner_.weights_)
    P_test = model.member_predictions(X_test)
    codes = encode_labels(y_test, model.classes_)
    binary = model.task_ == "binary"
    cascade = Cascade(
        rule="window" if binary else "confidence",
        target="coverage_at_risk" if binary else "accuracy",
        epsilon=0.001,
        risk=0.05,
        weights=model.combiner_.weights_,
        costs=costs,
    )
    cascade.fit(model.oof_, model.oof_labels_)
    out = cascade.predict(P_test)
    full = cascade._stage_proba(P_test.values)[:, -1]
    row = {
        "task": model.task_,
        "members_run": cascade.order_,
        "relative_cost": float(out.cost.mean() / cascade.stage_costs_[-1]),
        "accuracy": float(np.mean(out.proba.argmax(axis=1) == codes)),
        "full_accuracy": float(np.mean(full.argmax(axis=1) == codes)),
        "exits": np.bincount(out.exit_stage, minlength=len(cascade.order_)).tolist(),
    }
    if binary:
        row["coverage_at_5pct_risk"] = coverage_at_risk(out.proba, codes, 0.05)
        row["full_coverage_at_5pct_risk"] = coverage_at_risk(full, codes, 0.05)
    return row


def main(names: list[str]) -> None:
    print(
        "| dataset | rule | members run (cheapest first) | test accuracy: cascade / full "
        "| coverage at 5% risk: cascade / full | cost vs full ensemble |"
    )
    print("|---|---|---|---|---|---:|")
    for name in names:
        r = run_dataset(name)
        cov = (
            f"{r['coverage_at_5pct_risk']:.4f} / {r['full_coverage_at_5pct_risk']:.4f}"
            if "coverage_at_5pct_risk" in r
            else "-"
        )
        rule = "window" if r["task"] == "binary" else "confidence"
        print(
            f"| {name} | {rule} | {', '.join(r['members_run'])} | {r['accuracy']:.4f} / "
            f"{r['full_accuracy']:.4f} | {cov} | {r['relative_cost']:.1%} |",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:] or ["letter", "adult", "churn"])
