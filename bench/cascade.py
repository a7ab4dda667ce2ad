"""Benchmark early-exit cascades: full-ensemble quality at a fraction of its cost.

    .venv/bin/python bench/cascade.py

Reuses the cross-fitted default zoo of bench/run.py (bench/.cache/run/<dataset>; it is built
if missing). The full ensemble is greedy selection over the members (its weights decide who
runs at all); each member's cost is its measured prediction time per row on the test split
(preprocessing plus its five fold models). Cascades are fitted on the OOF rows only, then:

- letter recognition (multiclass): confidence cascade, target = full ensemble's OOF accuracy
  minus 0.1 point; report test accuracy of both and the cascade's share of the full cost;
- adult and churn (binary): window cascade around the 0.5 decision threshold, target = the
  full ensemble's coverage at 5% selective risk; report test coverage of both and cost share;
- MNIST with deep members: three deep ensembles of MLPs of growing size (each network one
  member, cost = its FLOPs per sample counted by torch's FlopCounterMode), cross-fitted with
  5 folds on 8,000 digits of mnist_test.csv.gz (weights and thresholds chosen on their OOF
  predictions), scored on the last 2,000 (test predictions: the mean of the fold models).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from ensemblex.cascade import Cascade
from ensemblex.ensemble import EnsembleClassifier
from ensemblex.metrics.selective import coverage_at_risk
from ensemblex.tasks import encode_labels

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zoo import CACHE, load_dataset


def member_costs(model: EnsembleClassifier, X, weights) -> np.ndarray:
    """Seconds per row to predict with each member (all of its fold models, encodings
    included), best of 3; members the ensemble gives no weight never run and are not timed."""
    X = model.schema_.check(X)
    costs = []
    for member, weight in zip(model.fitted_members_, weights):
        if weight == 0:
            costs.append(0.0)
            continue
        best = np.inf
        for _ in range(3):
            start = time.perf_counter()
            member.predict(X)
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
    full = cascade.stage_probabilities(P_test.values)[:, -1]
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


def flops_per_member(model) -> float:
    """FLOPs of one member's forward pass on one sample (the batched net counts all K)."""
    import torch

    from ensemblex.deep import flops_per_sample

    return flops_per_sample(model.model_, torch.zeros(1, model.n_features_in_)) / model.model_.k


def mnist_deep_row() -> dict:
    import pandas as pd
    from sklearn.model_selection import StratifiedKFold

    from ensemblex import GreedySelection, Predictions
    from ensemblex.deep import DeepEnsembleClassifier
    from zoo import DATA

    frame = pd.read_csv(DATA / "mnist_test.csv.gz")
    X, y = frame.drop(columns="label").to_numpy(np.float32) / 255.0, frame["label"].to_numpy()
    X_fit, y_fit, X_test, y_test = X[:8000], y[:8000], X[8000:], y[8000:]
    sizes = [("small", 3, (32,)), ("medium", 3, (128,)), ("large", 5, (512, 512))]
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X_fit, y_fit))
    oof_blocks, test_blocks, names, costs = [], [], [], []
    for label, k, hidden in sizes:  # cross-fitted, like the tabular zoo: OOF rows pick thresholds
        oof = np.zeros((len(y_fit), k, 10))
        test = np.zeros((len(y_test), k, 10))
        for train, held_out in folds:
            net = DeepEnsembleClassifier(
                n_members=k,
                hidden=hidden,
                max_epochs=60,
                patience=6,
                batch_size=128,
                random_state=0,
            )
            net.fit(X_fit[train], y_fit[train])
            oof[held_out] = net.predict_members(X_fit[held_out])
            test += net.predict_members(X_test) / len(folds)
        oof_blocks.append(oof)
        test_blocks.append(test)
        names += [f"{label}{j}" for j in range(k)]
        costs += [flops_per_member(net) * len(folds)] * k
    P_oof, P_test = (
        Predictions(np.concatenate(b, axis=1), names, "multiclass", classes=np.arange(10))
        for b in (oof_blocks, test_blocks)
    )
    weights = GreedySelection().fit(P_oof, y_fit).weights_
    cascade = Cascade(costs=costs, weights=weights, epsilon=0.001).fit(P_oof, y_fit)
    out = cascade.predict(P_test)
    full = cascade.stage_probabilities(P_test.values)[:, -1]
    return {
        "task": "multiclass",
        "members_run": cascade.order_,
        "relative_cost": float(out.cost.mean() / cascade.stage_costs_[-1]),
        "accuracy": float(np.mean(out.proba.argmax(axis=1) == y_test)),
        "full_accuracy": float(np.mean(full.argmax(axis=1) == y_test)),
    }


RESULTS = Path(__file__).resolve().parent / "results" / "cascade.json"


def main(names: list[str]) -> None:
    """Print the table; each dataset's row is also kept in bench/results/cascade.json."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    print(
        "| dataset | rule | members run (cheapest first) | test accuracy: cascade / full "
        "| coverage at 5% risk: cascade / full | cost vs full ensemble |"
    )
    print("|---|---|---|---|---|---:|")
    for name in names:
        r = mnist_deep_row() if name == "mnist" else run_dataset(name)
        results[name] = r
        RESULTS.write_text(json.dumps(results, indent=2, default=float))
        cov = (
            f"{r['coverage_at_5pct_risk']:.4f} / {r['full_coverage_at_5pct_risk']:.4f}"
            if "coverage_at_5pct_risk" in r
            else "-"
        )
        rule = "window" if r["task"] == "binary" else "confidence"
        if name == "mnist":
            name = "mnist (deep MLP members, cost in FLOPs)"
        print(
            f"| {name} | {rule} | {', '.join(r['members_run'])} | {r['accuracy']:.4f} / "
            f"{r['full_accuracy']:.4f} | {cov} | {r['relative_cost']:.1%} |",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:] or ["letter", "adult", "churn", "mnist"])
