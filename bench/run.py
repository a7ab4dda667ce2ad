"""Benchmark the main job: the default zoo + AutoCombiner against its best single member.

    .venv/bin/python bench/run.py [california adult churn letter]

For each dataset from ../shared/data (the fixed splits of bench/zoo.py: 20% test with seed 0,
adult with its own test file) it fits ``EnsembleRegressor``/``EnsembleClassifier`` with the
``default`` zoo, 5 folds and seed 0 on the training rows (resumable under
bench/.cache/run/<dataset>), then scores on the test rows: the chosen ensemble, the best
single member as chosen by OOF score (what a user without ensembling would ship), the best
member in hindsight on test, and the plain mean. Prints a markdown table.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from ensemblex.combiners import Mean
from ensemblex.ensemble import EnsembleClassifier, EnsembleRegressor
from ensemblex.tasks import encode_labels

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zoo import CACHE, load_dataset

DATASETS = ["california", "adult", "churn", "letter"]


def run_dataset(name: str) -> dict:
    ds = load_dataset(name)
    X, y = ds.train.drop(columns=ds.target), ds.train[ds.target].to_numpy()
    X_test, y_test = ds.test.drop(columns=ds.target), ds.test[ds.target].to_numpy()
    cls = EnsembleRegressor if ds.task == "regression" else EnsembleClassifier
    start = time.perf_counter()
    model = cls(members="default", cv=5, random_state=0, work_dir=CACHE / "run" / name)
    model.fit(X, y)
    fit_seconds = time.perf_counter() - start
    metric = model.metric_
    codes = encode_labels(y_test, model.classes_) if model.classes_ is not None else y_test
    P_folds = model.member_fold_predictions(X_test)
    P_test = model.member_predictions(X_test)
    member_test = dict(
        zip(P_test.members, metric.score_batch(codes, P_test.values.transpose(1, 0, 2)))
    )
    board = model.leaderboard_
    members = board[board["kind"] == "member"]
    sign = -1 if metric.greater_is_better else 1
    best_oof = members.iloc[np.argmin(sign * members["cv_score"].to_numpy())]["model"]
    best_test = min(member_test, key=lambda m: sign * member_test[m])
    combined = model.combiner_.predict_folds(P_folds)  # as the model predicts: fold by fold
    ensemble = metric.score(codes, combined)
    mean = metric.score(codes, Mean().fit(model.oof_, model.oof_labels_).predict(P_test))
    accuracy = None
    if model.classes_ is not None:
        accuracy = float(np.mean(combined.argmax(axis=1) == codes))
    return {
        "task": ds.task,
        "metric": metric.name,
        "greater_is_better": metric.greater_is_better,
        "n_train": len(X),
        "n_test": len(X_test),
        "chosen": getattr(model.combiner_, "method_", "?"),
        "ensemble": ensemble,
        "ensemble_accuracy": accuracy,
        "best_member_by_oof": best_oof,
        "best_member_by_oof_test": member_test[best_oof],
        "best_member_in_hindsight": best_test,
        "best_member_in_hindsight_test": member_test[best_test],
        "mean": mean,
        "fit_seconds": fit_seconds,
        "beats_best_single": bool(sign * ensemble < sign * member_test[best_oof]),
    }


def main(names: list[str]) -> None:
    results = {}
    print(
        "| dataset | metric | chosen combiner | ensemble test | best member by OOF (test) "
        "| best member in hindsight (test) | mean of members | fit s | beats best single |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    for name in names:
        r = results[name] = run_dataset(name)
        print(
            f"| {name} | {r['metric']} | {r['chosen']} | {r['ensemble']:.5g} | "
            f"{r['best_member_by_oof']} ({r['best_member_by_oof_test']:.5g}) | "
            f"{r['best_member_in_hindsight']} ({r['best_member_in_hindsight_test']:.5g}) | "
            f"{r['mean']:.5g} | {r['fit_seconds']:.0f} | "
            f"{'yes' if r['beats_best_single'] else 'NO'} |",
            flush=True,
        )
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "run.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:] or DATASETS)
