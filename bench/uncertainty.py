"""Benchmark: does the ensemble give uncertainty a user can trust more than its best member's?

    .venv/bin/python bench/uncertainty.py

Classification (letter, adult, churn: the default zoo of bench/run.py, reused from its cache;
MNIST: the `fast` zoo on 8,000 of the 10,000 digits in mnist_test.csv.gz, 2,000 held out):
test NLL, ECE, AURC of the ensemble chosen by AutoCombiner against the best single member (by
OOF score), and OOD detection AUROC of max-probability, with uniform-noise inputs as
out-of-distribution rows (and, for MNIST, inverted digits too).

Regression (California housing): the members as a finite ensemble forecast: CRPS
(``scoringrules.crps_ensemble``) against the best member's absolute error (its CRPS as a
point forecast), the spread-skill ratio and the rank histogram's flatness (max / min count).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ensemblex.ensemble import EnsembleClassifier, EnsembleRegressor
from ensemblex.metrics import get_metric
from ensemblex.metrics.calibration import expected_calibration_error
from ensemblex.metrics.ood import detection_metrics, max_probability_score
from ensemblex.metrics.probabilistic import rank_histogram, spread_skill_ratio
from ensemblex.metrics.selective import aurc
from ensemblex.tasks import encode_labels

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zoo import CACHE, DATA, Dataset, load_dataset


def load_mnist() -> Dataset:
    frame = pd.read_csv(DATA / "mnist_test.csv.gz")
    train, test = frame.iloc[:8000].reset_index(drop=True), frame.iloc[8000:].reset_index(drop=True)
    return Dataset("mnist", "multiclass", "label", train, test)


def noise_like(X: pd.DataFrame, rng) -> pd.DataFrame:
    """Uniform noise over each column's observed range (numeric) or categories (text)."""
    noise = {}
    for col in X.columns:
        if pd.api.types.is_numeric_dtype(X[col]):
            lo, hi = X[col].min(), X[col].max()
            values = rng.uniform(lo, hi, len(X))
            noise[col] = np.round(values) if pd.api.types.is_integer_dtype(X[col]) else values
        else:
            noise[col] = rng.choice(X[col].dropna().unique(), len(X))
    return pd.DataFrame(noise).astype(X.dtypes.to_dict())


def classification_row(ds: Dataset, members: str) -> dict:
    X, y = ds.train.drop(columns=ds.target), ds.train[ds.target].to_numpy()
    X_test, y_test = ds.test.drop(columns=ds.target), ds.test[ds.target].to_numpy()
    model = EnsembleClassifier(
        members=members, cv=5, random_state=0, work_dir=CACHE / "run" / ds.name
    ).fit(X, y)
    P = model.member_predictions(X_test)
    codes = encode_labels(y_test, model.classes_)
    ensemble = model.combiner_.predict(P)
    board = model.leaderboard_
    members_only = board[board["kind"] == "member"]
    best = members_only.iloc[int(np.argmin(members_only["cv_score"].to_numpy()))]["model"]
    single = P.member(best)
    nll = get_metric("log_loss", model.task_)
    rng = np.random.default_rng(0)
    ood_sets = {"noise": noise_like(X_test, rng)}
    if ds.name == "mnist":
        ood_sets["inverted digits"] = 255 - X_test
    row = {"dataset": ds.name, "best member": best, "chosen": model.combiner_.method_}
    for label, proba in (("ensemble", ensemble), ("best member", single)):
        row[f"{label} NLL"] = nll.score(codes, proba)
        row[f"{label} ECE"] = expected_calibration_error(proba, codes)
        row[f"{label} AURC"] = aurc(proba, codes)
    for name, X_ood in ood_sets.items():
        P_ood = model.member_predictions(X_ood)
        ens_ood = model.combiner_.predict(P_ood)
        row[f"ensemble OOD AUROC ({name})"] = detection_metrics(
            1 - ensemble.max(axis=1), 1 - ens_ood.max(axis=1)
        ).auroc
        row[f"best member OOD AUROC ({name})"] = detection_metrics(
            max_probability_score(single[:, None]),
            max_probability_score(P_ood.member(best)[:, None]),
        ).auroc
    return row


def regression_row() -> dict:
    import scoringrules as sr

    ds = load_dataset("california")
    X, y = ds.train.drop(columns=ds.target), ds.train[ds.target].to_numpy()
    X_test, y_test = ds.test.drop(columns=ds.target), ds.test[ds.target].to_numpy(dtype=float)
    model = EnsembleRegressor(
        members="default", cv=5, random_state=0, work_dir=CACHE / "run" / "california"
    ).fit(X, y)
    means = model.member_predictions(X_test).values[:, :, 0]
    board = model.leaderboard_
    members_only = board[board["kind"] == "member"]
    best = members_only.iloc[int(np.argmin(members_only["cv_score"].to_numpy()))]["model"]
    j = model.member_names_.index(best)
    hist = rank_histogram(means, y_test)
    return {
        "ensemble CRPS": float(np.mean(sr.crps_ensemble(y_test, means))),
        "best member MAE (= its CRPS)": float(np.mean(np.abs(means[:, j] - y_test))),
        "best member": best,
        "spread-skill ratio": spread_skill_ratio(means, y_test),
        "rank histogram max/min": float(hist.max() / max(hist.min(), 1)),
        "rank histogram": hist.tolist(),
    }


def main() -> None:
    rows = [
        classification_row(load_dataset(name), "default") for name in ("letter", "adult", "churn")
    ]
    rows.append(classification_row(load_mnist(), "fast"))
    keys = [k for k in rows[0] if k not in ("dataset",)]
    keys += [k for k in rows[-1] if k not in keys and k != "dataset"]
    print("| metric | " + " | ".join(r["dataset"] for r in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for key in keys:
        cells = [r.get(key, "-") for r in rows]
        print(
            f"| {key} | "
            + " | ".join(f"{c:.4f}" if isinstance(c, float) else str(c) for c in cells)
            + " |",
            flush=True,
        )
    print()
    for key, value in regression_row().items():
        print(
            f"- California housing, {key}: {value:.4g}"
            if isinstance(value, float)
            else f"- California housing, {key}: {value}"
        )


if __name__ == "__main__":
    main()
