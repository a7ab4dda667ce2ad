"""Neural boosting against an equal-size deep ensemble and LightGBM (California, adult).

For California housing (regression, RMSE in units of $100,000) and adult (binary, log-loss and
accuracy), on the fixed splits of ``bench/zoo.py``:

- ``boost``: :class:`~ensemblex.deep.NeuralBoostingRegressor` / ``Classifier`` with at most
  ``M = 10`` stages, each an MLP with hidden layers ``(64, 64)``, shrinkage 0.5 with a line
  search, at most 40 epochs a stage (AdamW, step 2e-3);
- ``boost_features``: the same with GrowNet's input of the previous stage's last hidden layer;
- ``boost_corrective``: the same with GrowNet's fully-corrective step (2 epochs after each
  stage);
- ``ensemble``: :class:`~ensemblex.deep.DeepEnsembleRegressor` / ``Classifier`` of ``M = 10``
  independent MLPs of the same widths (as many networks and parameters as 10 stages; AdamW,
  step 2e-3, at most 60 epochs);
- ``lgbm``: LightGBM as the default zoo's ``lgbm_l31_lr05`` (300 trees, learning rate 0.05,
  31 leaves), categoricals read natively.

Networks read ensemblex's one-hot encoding (standardised numerics), as the torch members do.
Both deep models hold out 10% of the training rows for early stopping. adult's training rows
are subsampled to ``ADULT_ROWS`` (seeded) to keep the run within minutes on 2 busy cores; the
test rows are all used. Each model's test score, fit seconds, networks and parameters are
recorded, and the boosted model's test score after every stage.

Run: ``BENCH_THREADS=2 .venv/bin/python bench/boosting.py [dataset ...] [model ...]``; writes
``bench/results/boosting.json`` (merging into the file's earlier entries).
"""

from __future__ import annotations

import json
import os
import sys
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error

from ensemblex.deep import (
    DeepEnsembleClassifier,
    DeepEnsembleRegressor,
    NeuralBoostingClassifier,
    NeuralBoostingRegressor,
)
from ensemblex.preprocessing import infer_schema, make_preprocessor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zoo import load_dataset

RESULTS = Path(__file__).resolve().parent / "results" / "boosting.json"
TARGET_UNIT = {"california": 1e5}  # RMSE in $100,000, as scikit-learn's copy of the data
ADULT_ROWS = 12_000
M, HIDDEN = 10, (64, 64)
SEED = 0
MODELS = ("boost", "boost_features", "boost_corrective", "ensemble", "lgbm")


def score(name: str, task: str, y: np.ndarray, pred: np.ndarray) -> dict:
    """Test score of values ``(n,)`` or probabilities ``(n, k)``."""
    if task == "regression":
        unit = TARGET_UNIT.get(name, 1.0)
        return {"rmse": float(np.sqrt(mean_squared_error(y / unit, pred / unit)))}
    return {
        "accuracy": float(accuracy_score(y, pred.argmax(axis=1))),
        "log_loss": float(log_loss(y, np.clip(pred, 1e-15, 1), labels=np.arange(pred.shape[1]))),
    }


def mlp_parameters(d_in: int, d_out: int) -> int:
    """Weights and biases of one MLP ``d_in -> HIDDEN -> d_out``."""
    sizes = [d_in, *HIDDEN, d_out]
    return sum(a * b + b for a, b in pairwise(sizes))


def models(task: str) -> dict:
    reg = task == "regression"
    boost = NeuralBoostingRegressor if reg else NeuralBoostingClassifier
    deep = DeepEnsembleRegressor if reg else DeepEnsembleClassifier
    lgbm = LGBMRegressor if reg else LGBMClassifier
    stages = {
        "n_stages": M,
        "hidden": HIDDEN,
        "epochs_per_stage": 40,
        "learning_rate": 0.5,
        "lr": 2e-3,
        "patience": 5,
        "n_iter_no_change": 3,
        "random_state": SEED,
    }
    return {
        "boost": boost(**stages),
        "boost_features": boost(**stages, pass_features=True),
        "boost_corrective": boost(**stages, corrective_epochs=2),
        "ensemble": deep(
            n_members=M, hidden=HIDDEN, lr=2e-3, max_epochs=60, patience=5, random_state=SEED
        ),
        "lgbm": lgbm(
            n_estimators=300, learning_rate=0.05, num_leaves=31, random_state=SEED, verbose=-1
        ),
    }


def load(name: str) -> dict:
    """Train and test rows, one-hot for the networks and native for LightGBM."""
    data = load_dataset(name)
    train = data.train
    if name == "adult" and len(train) > ADULT_ROWS:
        train = train.sample(n=ADULT_ROWS, random_state=SEED).reset_index(drop=True)
    X, X_test = train.drop(columns=[data.target]), data.test.drop(columns=[data.target])
    schema = infer_schema(X, source=name)
    X_test = schema.check(X_test)
    y, y_test = train[data.target].to_numpy(), data.test[data.target].to_numpy()
    if data.task != "regression":
        classes, y = np.unique(y, return_inverse=True)
        y_test = np.searchsorted(classes, y_test)
    out = {"task": data.task, "y": y, "y_test": y_test}
    for encoding in ("onehot", "native"):
        pre = make_preprocessor(schema, encoding)
        out[encoding] = (pre.fit_transform(X).astype(np.float32), pre.transform(X_test))
    return out


def run(name: str, labels: list[str], out: dict) -> dict:
    data = load(name)
    task, y, y_test = data["task"], data["y"], data["y_test"]
    X, X_test = data["onehot"]
    n_out = 1 if task == "regression" else int(y.max()) + 1
    per_net = mlp_parameters(X.shape[1], n_out)
    out |= {"task": task, "n_train": len(X), "n_test": len(X_test), "n_features": X.shape[1]}
    for label, model in models(task).items():
        if label not in labels:
            continue
        Xa, Xb = data["native"] if label == "lgbm" else (X, X_test)
        if label == "lgbm":
            model.set_params(n_jobs=torch.get_num_threads())
        start = time.perf_counter()
        model.fit(Xa, y)
        seconds = time.perf_counter() - start
        pred = model.predict(Xb) if task == "regression" else model.predict_proba(Xb)
        row = score(name, task, y_test, pred) | {"fit_seconds": seconds}
        if label.startswith("boost"):
            stages = model.n_stages_
            first = mlp_parameters(X.shape[1], n_out)
            later = mlp_parameters(X.shape[1] + HIDDEN[-1], n_out) if model.pass_features else first
            row |= {
                "networks": stages,
                "parameters": first + (stages - 1) * later if stages else 0,
                "stage_epochs": model.stage_epochs_,
                "validation_loss": model.validation_loss_,
                "test_by_stage": [
                    score(name, task, y_test, p)
                    for p in (
                        model.staged_predict(Xb)
                        if task == "regression"
                        else model.staged_predict_proba(Xb)
                    )
                ],
            }
        elif label == "ensemble":
            row |= {"networks": M, "parameters": M * per_net, "epochs": len(model.history_)}
        out[label] = row
        brief = {k: v for k, v in row.items() if k not in ("validation_loss", "test_by_stage")}
        print(name, label, brief, flush=True)
    return out


def main(names: list[str], labels: list[str]) -> None:
    # BENCH_THREADS=1 keeps a busy machine from oversubscribing its cores
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", torch.get_num_threads())))
    print(f"torch threads: {torch.get_num_threads()}")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for name in names:
        results[name] = run(name, labels, results.get(name, {}))
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2))
    print_table(results)


def print_table(results: dict) -> None:
    print("\n| dataset | model | test score | networks | parameters | fit s |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        for label in MODELS:
            if label not in r:
                continue
            m = r[label]
            if r["task"] == "regression":
                test = f"RMSE {m['rmse']:.4f}"
            else:
                test = f"log-loss {m['log_loss']:.4f}, accuracy {m['accuracy']:.4f}"
            nets = m.get("networks", "")
            params = f"{m['parameters']:,}" if "parameters" in m else ""
            print(f"| {name} | {label} | {test} | {nets} | {params} | {m['fit_seconds']:.1f} |")


if __name__ == "__main__":
    # arguments: dataset names and/or model labels (default: all of each)
    args = sys.argv[1:]
    main(
        [a for a in args if a not in MODELS] or ["california", "adult"],
        [a for a in args if a in MODELS] or list(MODELS),
    )
