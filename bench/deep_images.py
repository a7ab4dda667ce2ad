"""Deep ensembles on images: 5 small CNNs vs one, and 5 MLPs vs one, on MNIST digits.

``mnist_test.csv.gz`` (10,000 real MNIST digits) is shuffled once (seed 0): 8,000 rows to
train on (each model holds out 10% of them for early stopping), 2,000 test rows. Pixels are
divided by 255. Every model trains its K members as one batched computation
(``DeepEnsembleClassifier``: grouped convolutions for the CNN, batched matrix products for
the MLP). Torch uses one thread (``BENCH_THREADS`` overrides).

Run: ``.venv/bin/python bench/deep_images.py``; writes ``bench/results/deep_images.json``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, log_loss

from ensemblex.deep import DeepEnsembleClassifier

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results" / "deep_images.json"
CNN = {
    "architecture": "cnn",
    "channels": (16, 32),
    "max_epochs": 4,
    "batch_size": 128,
    "lr": 2e-3,
    "patience": 3,
}
MLP = {"hidden": (256, 256), "max_epochs": 20, "batch_size": 128, "lr": 1e-3, "patience": 5}


def main() -> None:
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", 1)))
    frame = pd.read_csv(DATA / "mnist_test.csv.gz")
    y = frame.pop("label").to_numpy()
    X = frame.to_numpy(dtype=np.float32) / 255.0
    order = np.random.default_rng(0).permutation(len(X))
    train, test = order[:8000], order[8000:]
    rows = []
    for name, params in (("cnn", CNN), ("mlp", MLP)):
        for k in (1, 5):
            model = DeepEnsembleClassifier(n_members=k, random_state=0, **params)
            start = time.perf_counter()
            model.fit(X[train], y[train])
            seconds = time.perf_counter() - start
            members = model.predict_members(X[test])
            proba = members.mean(axis=1)
            row = {
                "model": f"{name} x{k}",
                "accuracy": float(accuracy_score(y[test], model.classes_[proba.argmax(1)])),
                "log_loss": float(log_loss(y[test], proba, labels=model.classes_)),
                "mean_member_accuracy": float(
                    np.mean(
                        [
                            (model.classes_[m.argmax(1)] == y[test]).mean()
                            for m in members.transpose(1, 0, 2)
                        ]
                    )
                ),
                "train_seconds": seconds,
                "epochs": len(model.history_),
            }
            rows.append(row)
            print(row, flush=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=2))
    print("\n| model | test accuracy | log-loss | mean member accuracy | train s | epochs |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['accuracy']:.4f} | {r['log_loss']:.4f} | "
            f"{r['mean_member_accuracy']:.4f} | {r['train_seconds']:.0f} | {r['epochs']} |"
        )


if __name__ == "__main__":
    main()
