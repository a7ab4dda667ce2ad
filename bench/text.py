"""Text members and zero-shot prompt ensembles on SMS spam.

    .venv/bin/python bench/text.py [--jobs 2]

SMS spam (``../shared/data/sms_spam.csv``, 5,574 messages, 13% spam), split once: 20%
stratified test, seed 0. Two parts:

1. The default text zoo (:func:`ensemblex.members.text.text_members`: TF-IDF of words and of
   characters with a logistic regression, MiniLM sentence embeddings with a logistic and an
   MLP head), cross-fitted (5 folds) through ``EnsembleClassifier(combiner="auto")`` on the
   training rows; each member (the mean of its fold models) and the ensemble are scored on
   the test rows: accuracy, log-loss, ROC AUC.
2. Zero-shot prompt ensembles (:class:`ensemblex.members.prompts.ZeroShotPrompts`): five
   prompt sets written before looking at the data, each one member; combined with no labels
   by the label-free combiners, fitted on the training rows' predictions (``y=None``) and
   scored on the test rows, against the plain mean and the best single prompt set (chosen on
   the test labels, an oracle no label-free method has).

Embeddings are cached in ``bench/.cache/embeddings`` (the first run encodes the 5,574 texts
once, about 70 s on one busy core; later runs read them). Writes ``bench/results/text.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data" / "sms_spam.csv"
CACHE = HERE / ".cache" / "embeddings"
SEED = 0

# Written before looking at the data (no label or test row informed them).
PROMPT_SETS = [
    {"ham": "a personal text message between friends or family", "spam": "a spam message"},
    {
        "ham": "an everyday conversation about plans, feelings or meeting up",
        "spam": "an advertisement asking you to call a number or reply to win cash",
    },
    {
        "ham": ["ok see you later", "I'll call you when I get home", "sorry I'm running late"],
        "spam": [
            "Congratulations! You have won a free prize, call now to claim",
            "URGENT: your mobile number has been awarded a cash reward",
            "Free entry: text WIN to enter the weekly competition",
        ],
    },
    {"ham": "a casual chat message", "spam": "a marketing message with a promotion or offer"},
    {"ham": "a reply to a friend", "spam": "a scam about a lottery, a reward or a ringtone"},
]


def scores(proba: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy, log-loss and ROC AUC of probabilities ``(n, 2)`` for codes ``y``."""
    proba = np.asarray(proba, dtype=np.float64)
    proba = proba / proba.sum(axis=1, keepdims=True)  # float32 members sum to 1 +- 1e-7
    return {
        "accuracy": float(accuracy_score(y, proba.argmax(axis=1))),
        "log_loss": float(log_loss(y, np.clip(proba, 1e-15, 1), labels=[0, 1])),
        "auc": float(roc_auc_score(y, proba[:, 1])),
    }


def text_zoo(train, test, y_train, y_test, jobs: int) -> dict:
    from ensemblex.ensemble import EnsembleClassifier
    from ensemblex.members.text import text_columns, text_members

    columns = text_columns(train)
    members = text_members("binary", random_state=SEED)
    model = EnsembleClassifier(members=members, combiner="auto", cv=5, random_state=SEED)
    model.set_params(n_jobs=jobs)
    start = time.perf_counter()
    model.fit(train, y_train)
    fit_seconds = time.perf_counter() - start
    classes = list(model.classes_)
    codes = np.array([classes.index(v) for v in y_test])
    P = model.crossfit_fold_predictions(test)
    mean = sum(p.values for p in P) / len(P)
    rows = {}
    for j, name in enumerate(P[0].members):
        rows[name] = {
            **scores(mean[:, j, :], codes),
            "fit_seconds": float(model.member_seconds_[name]["fit"]),  # all folds
        }
    ensemble = scores(model.predict_proba(test), codes)
    best = max(rows, key=lambda n: rows[n]["accuracy"])
    return {
        "detected_text_columns": columns,
        "members": rows,
        "ensemble": {**ensemble, "combiner": getattr(model.combiner_, "method_", None)},
        "best_member": best,
        "beats_best_member": ensemble["accuracy"] > rows[best]["accuracy"],
        "fit_seconds": fit_seconds,
    }


def zero_shot(train, test, y_test) -> dict:
    from ensemblex.combiners.labelfree import (
        ConsensusWeighting,
        DawidSkene,
        ProbabilisticDawidSkene,
        SpectralMetaLearner,
    )
    from ensemblex.members.prompts import ZeroShotPrompts
    from ensemblex.predictions import Predictions

    classes = ["ham", "spam"]
    codes = np.array([classes.index(v) for v in y_test])
    start = time.perf_counter()
    member = ZeroShotPrompts("prompts", PROMPT_SETS, classes=classes).fit(train, None)
    names = member.column_names()

    def as_P(values):
        return Predictions(values, names, "binary", classes=np.array(classes))

    P_train, P_test = as_P(member.predict(train)), as_P(member.predict(test))
    out = {
        "labels_used": 0,
        "prompt_sets": {n: scores(P_test.values[:, j], codes) for j, n in enumerate(names)},
        "mean": scores(P_test.values.mean(axis=1), codes),
    }
    for label, combiner in [
        ("ConsensusWeighting", ConsensusWeighting()),
        ("DawidSkene", DawidSkene()),
        ("ProbabilisticDawidSkene", ProbabilisticDawidSkene()),
        ("SpectralMetaLearner", SpectralMetaLearner()),
    ]:
        combiner.fit(P_train)  # no labels
        out[label] = scores(combiner.predict(P_test), codes)
    best = max(out["prompt_sets"], key=lambda n: out["prompt_sets"][n]["accuracy"])
    out["best_prompt_set_oracle"] = {"name": best, **out["prompt_sets"][best]}
    out["majority_class_accuracy"] = float((codes == 0).mean())
    out["seconds"] = time.perf_counter() - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="parallel folds")
    args = parser.parse_args()
    os.environ.setdefault("ENSEMBLEX_EMBEDDING_CACHE", str(CACHE))  # workers inherit it
    import torch

    torch.set_num_threads(1)
    from ensemblex.members.embeddings import cache_folder, embed

    df = pd.read_csv(DATA)
    train, test = train_test_split(df, test_size=0.2, random_state=SEED, stratify=df["label"])
    X_train, X_test = train[["text"]].reset_index(drop=True), test[["text"]].reset_index(drop=True)
    y_train, y_test = train["label"].to_numpy(), test["label"].to_numpy()
    # every text encoded once, before any fold (labels are not read): the members then read
    # the cache, here and in the worker processes
    start = time.perf_counter()
    embed(df["text"].astype(str).tolist(), n_threads=2)
    encode_seconds = time.perf_counter() - start
    result = {
        "data": {"rows": len(df), "train": len(train), "test": len(test), "seed": SEED},
        "encode_seconds": encode_seconds,
        "zoo": text_zoo(X_train, X_test, y_train, y_test, args.jobs),
        "zero_shot": zero_shot(X_train, X_test, y_test),
    }
    zoo, zs = result["zoo"], result["zero_shot"]
    print(f"embeddings: {encode_seconds:.1f} s (cached in {cache_folder()})")
    print(f"{'member':<24} {'accuracy':>9} {'log-loss':>9} {'AUC':>7}")
    for name, row in [*zoo["members"].items(), ("ENSEMBLE", zoo["ensemble"])]:
        print(f"{name:<24} {row['accuracy']:9.4f} {row['log_loss']:9.4f} {row['auc']:7.4f}")
    print(
        f"ensemble ({zoo['ensemble']['combiner']}) beats best member {zoo['best_member']}: "
        f"{zoo['beats_best_member']}; fit {zoo['fit_seconds']:.1f} s"
    )
    print("zero-shot, 0 labels:")
    for name, row in [
        *zs["prompt_sets"].items(),
        ("mean", zs["mean"]),
        *[(k, zs[k]) for k in ("ConsensusWeighting", "DawidSkene", "ProbabilisticDawidSkene")],
        ("SpectralMetaLearner", zs["SpectralMetaLearner"]),
    ]:
        print(f"{name:<24} {row['accuracy']:9.4f} {row['log_loss']:9.4f} {row['auc']:7.4f}")
    print(f"majority class: {zs['majority_class_accuracy']:.4f}")
    out = HERE / "results" / "text.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
