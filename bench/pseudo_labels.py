"""Benchmark: does pseudo-labelling help an ensemble that has few labels?

    .venv/bin/python bench/pseudo_labels.py            # sms, sms_tfidf, adult, cora
    .venv/bin/python bench/pseudo_labels.py sms cora   # some of them
    .venv/bin/python bench/pseudo_labels.py sms adult --seeds 3   # + 2 more labelled draws

For each dataset, test accuracy and log-loss of the same members and combiner fitted
(a) on the few labels alone, (b) with :class:`ensemblex.pseudo_labels.PseudoLabeler` over
the unlabelled rows, (c) on every training label, for reference. The test rows are never
pseudo-labelled and never seen before the final scoring.

- ``sms``: SMS spam, the 20% test split of ``bench/zoo.py`` (seed 0); 5% of the training
  labels kept (stratified, seed 0), the rest unlabelled; members: the default text zoo
  (:func:`ensemblex.members.text.text_members`: TF-IDF words and characters with a logistic
  regression, MiniLM sentence embeddings with a linear and an MLP head; embeddings read
  from ``bench/.cache/embeddings``, where ``bench/text.py`` caches them).
- ``sms_tfidf``: the same with the two TF-IDF members only (no pretrained encoder).
- ``adult``: its own train/test files; 5% of the training labels; the ``fast`` zoo; the
  unlabelled pool is a 10,000-row sample of the other training rows (time on 2 cores).
- ``cora``: Planetoid's split: labelled = the 140 ``train`` nodes, unlabelled = the 1,068
  ``unlabeled`` nodes, test = the 1,000 ``test`` nodes; the ``val`` nodes' labels are read
  by nothing (the out-of-fold score on the 140 decides the rounds), and neither val nor
  test nodes are pseudo-labelled (all nodes stay in the graph, as in any transductive
  run); reference: train + val labels (640). Members: GCN, GAT, APPNP (one seed each) and
  label propagation from :func:`ensemblex.members.graph.graph_members` (the whole zoo over
  10 seeds is ~20x the time). Needs ``ensemblex.members.graph``.

Writes ``bench/results/pseudo_labels.json`` (datasets run now replace their entries).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from ensemblex.ensemble import EnsembleClassifier
from ensemblex.metrics import get_metric
from ensemblex.pseudo_labels import PseudoLabeler
from ensemblex.tasks import encode_labels

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zoo import DATA, load_dataset

RESULTS = Path(__file__).resolve().parent / "results" / "pseudo_labels.json"
EMBEDDINGS = Path(__file__).resolve().parent / ".cache" / "embeddings"
SEED = 0
SHARE = 0.05  # labels kept
POOL = 10_000  # unlabelled adult rows used (time on 2 cores)
# Cora's zoo, cut to fit ~3 minutes on 2 busy cores: 4 architectures, one seed each
CORA_ARCHITECTURES = ("gcn", "gat", "appnp", "label_propagation")
CORA_SEEDS = 1
SETTINGS = dict(
    max_rounds=3,
    target_precision=0.99,
    thresholds="per_class",
    class_balance=True,
    max_share=0.25,
    patience=1,
    cv=5,
    random_state=SEED,
)
PSEUDO = "few labels + pseudo-labels"
# the ablation: one threshold for all classes and no class balance
GLOBAL = {"thresholds": "global", "class_balance": False}


def test_scores(model, X_test, y_test) -> dict:
    proba = model.predict_proba(X_test)
    codes = encode_labels(y_test, model.classes_)
    task = "binary" if len(model.classes_) == 2 else "multiclass"
    return {
        "test_accuracy": float(np.mean(proba.argmax(axis=1) == codes)),
        "test_log_loss": get_metric("log_loss", task).score(codes, proba),
    }


def compare(name, members, X, y, X_u, y_u, X_test, y_test, X_all, y_all, variants=None) -> dict:
    """Few labels alone, with pseudo-labelling (and ``variants``: setting name -> options of
    :class:`PseudoLabeler`), and every label, on the same members."""
    rows, histories = [], {}
    settings = {"few labels": {"max_rounds": 0}, PSEUDO: {}, **(variants or {})}
    for setting, options in settings.items():
        start = time.perf_counter()
        model = PseudoLabeler(members, **{**SETTINGS, **options})
        model.fit(X, y, X_u, y_unlabelled_true=y_u)
        row = {"setting": setting, **test_scores(model, X_test, y_test)}
        best = model.history_.iloc[model.best_round_]
        row |= {
            "seconds": time.perf_counter() - start,
            "best_round": int(model.best_round_),
            "pseudo_rows_per_fold": float(best["pseudo_rows"]),
            "pseudo_accuracy": _plain(float(best["pseudo_accuracy"])),
            "oof_log_loss": float(best["oof_log_loss"]),
        }
        rows.append(row)
        if len(model.history_) > 1:
            histories[setting] = _plain(model.history_.to_dict(orient="records"))
        print(f"{name}: {setting}: {_line(row)}", flush=True)
    start = time.perf_counter()
    full = EnsembleClassifier(members, cv=SETTINGS["cv"], random_state=SEED).fit(X_all, y_all)
    row = {"setting": "all labels", **test_scores(full, X_test, y_test)}
    row["seconds"] = time.perf_counter() - start
    rows.append(row)
    print(f"{name}: all labels ({len(X_all)}): {_line(row)}", flush=True)
    return {
        "labelled": len(X),
        "unlabelled": len(X_u),
        "all_labels": len(X_all),
        "test": len(X_test),
        "rows": rows,
        "history": histories,
    }


def _plain(value):
    """JSON-safe: nan and inf (no threshold yet, or none reached) become None."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _line(row: dict) -> str:
    parts = [f"accuracy {row['test_accuracy']:.4f}", f"log-loss {row['test_log_loss']:.4f}"]
    if "best_round" in row:
        parts.append(f"best round {row['best_round']}")
        parts.append(f"pseudo rows/fold {row['pseudo_rows_per_fold']:.0f}")
        if row["pseudo_accuracy"] is not None:
            parts.append(f"pseudo-label accuracy {row['pseudo_accuracy']:.4f}")
    parts.append(f"{row['seconds']:.0f} s")
    return ", ".join(parts)


def few_labels(train: pd.DataFrame, target: str, seed: int = SEED, pool: int | None = None):
    """5% of the training labels (stratified); the rest unlabelled (a ``pool``-row sample
    of them, where given)."""
    kept, rest = train_test_split(
        train, train_size=SHARE, random_state=seed, stratify=train[target]
    )
    if pool is not None and len(rest) > pool:
        rest = rest.sample(n=pool, random_state=seed)
    return kept.reset_index(drop=True), rest.reset_index(drop=True)


def other_seeds(name, members, ds, seeds: int, pool: int | None = None) -> list[dict]:
    """Few labels alone against pseudo-labelling for the labelled subsets of seeds
    1..seeds-1 (the same members and settings): how much of a difference is the draw."""
    t, runs = ds.target, []
    X_test, y_test = ds.test.drop(columns=t), ds.test[t].to_numpy()
    for seed in range(1, seeds):
        kept, rest = few_labels(ds.train, t, seed, pool)
        run = {"seed": seed}
        for setting, options in (("few labels", {"max_rounds": 0}), (PSEUDO, {})):
            model = PseudoLabeler(members, **{**SETTINGS, **options})
            model.fit(kept.drop(columns=t), kept[t].to_numpy(), rest.drop(columns=t))
            best = model.history_.iloc[model.best_round_]
            run[setting] = {
                **test_scores(model, X_test, y_test),
                "best_round": int(model.best_round_),
                "pseudo_rows_per_fold": float(best["pseudo_rows"]),
            }
        runs.append(run)
        few, pseudo = run["few labels"], run[PSEUDO]
        print(
            f"{name}, labels of seed {seed}: accuracy {few['test_accuracy']:.4f} -> "
            f"{pseudo['test_accuracy']:.4f}, log-loss {few['test_log_loss']:.4f} -> "
            f"{pseudo['test_log_loss']:.4f} (best round {pseudo['best_round']})",
            flush=True,
        )
    return runs


def seed_summary(entry: dict) -> dict:
    """Mean test scores over the seeds (seed 0's from the main rows) and the mean change."""
    main = {row["setting"]: row for row in entry["rows"]}
    runs = [{"seed": SEED, "few labels": main["few labels"], PSEUDO: main[PSEUDO]}]
    runs += entry.get("seeds", [])
    summary = {"seeds": len(runs)}
    for key in ("test_accuracy", "test_log_loss"):
        few = np.array([r["few labels"][key] for r in runs])
        pseudo = np.array([r[PSEUDO][key] for r in runs])
        summary[key] = {
            "few labels": float(few.mean()),
            PSEUDO: float(pseudo.mean()),
            "mean change": float((pseudo - few).mean()),
            "sd of change": float((pseudo - few).std(ddof=1)) if len(runs) > 1 else None,
        }
    return summary


def sms(seeds: int = 1, tfidf_only: bool = False) -> dict:
    ds = load_dataset("sms")
    kept, rest = few_labels(ds.train, ds.target)
    t = ds.target
    members = text_zoo(tfidf_only)
    name = "sms_tfidf" if tfidf_only else "sms"
    found = compare(
        name,
        members,
        kept.drop(columns=t),
        kept[t].to_numpy(),
        rest.drop(columns=t),
        rest[t].to_numpy(),
        ds.test.drop(columns=t),
        ds.test[t].to_numpy(),
        ds.train.drop(columns=t),
        ds.train[t].to_numpy(),
        variants={f"{PSEUDO} (global threshold, no balance)": GLOBAL},
    )
    return {**found, "seeds": other_seeds(name, members, ds, seeds)}


def sms_tfidf(seeds: int = 1) -> dict:
    """SMS spam with the two TF-IDF members only (no pretrained encoder)."""
    return sms(seeds, tfidf_only=True)


def text_zoo(tfidf_only: bool = False) -> list:
    """The default text zoo (TF-IDF words and characters, MiniLM linear and MLP heads), or
    with ``tfidf_only`` its two TF-IDF members."""
    from ensemblex.members.text import text_members

    if not tfidf_only:
        from ensemblex.members.embeddings import CACHE_ENV, embed

        # the embeddings bench/text.py cached (each text encoded once; workers read the cache)
        os.environ.setdefault(CACHE_ENV, str(EMBEDDINGS))
        embed(pd.read_csv(DATA / "sms_spam.csv")["text"].astype(str).tolist(), n_threads=2)
    return text_members("binary", random_state=SEED, columns=["text"], embeddings=not tfidf_only)


def adult(seeds: int = 1) -> dict:
    ds = load_dataset("adult")
    t = ds.target
    kept, rest = few_labels(ds.train, t, pool=POOL)
    found = compare(
        "adult",
        "fast",
        kept.drop(columns=t),
        kept[t].to_numpy(),
        rest.drop(columns=t),
        rest[t].to_numpy(),
        ds.test.drop(columns=t),
        ds.test[t].to_numpy(),
        ds.train.drop(columns=t),
        ds.train[t].to_numpy(),
    )
    return {**found, "seeds": other_seeds("adult", "fast", ds, seeds, POOL)}


def cora(seeds: int = 1) -> dict | None:
    if importlib.util.find_spec("ensemblex.members.graph") is None:
        print("cora: ensemblex.members.graph is not there; skipped")
        return None
    from ensemblex.graphs import Graph
    from ensemblex.members.graph import graph_members

    nodes = pd.read_csv(DATA / "cora_nodes.csv.gz")
    edges = pd.read_csv(DATA / "cora_edges.csv")
    graph = Graph.from_frames(nodes, edges, exclude=["label", "split"])
    members = [
        m
        for m in graph_members(graph, "multiclass", random_state=SEED, n_seeds=CORA_SEEDS)
        if m.name in CORA_ARCHITECTURES
    ]
    # a graph member reads only the node column (the graph holds the features)
    table = nodes[["node"]]
    part = {s: nodes["split"].to_numpy() == s for s in ("train", "val", "test", "unlabeled")}
    labels = nodes["label"].to_numpy()
    both = part["train"] | part["val"]
    return compare(
        "cora",
        members,
        table[part["train"]],
        labels[part["train"]],
        table[part["unlabeled"]],
        labels[part["unlabeled"]],
        table[part["test"]],
        labels[part["test"]],
        table[both],
        labels[both],
    )


def main() -> None:
    runs = {"sms": sms, "sms_tfidf": sms_tfidf, "adult": adult, "cora": cora}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", help=f"some of {list(runs)} (default: all)")
    parser.add_argument(
        "--seeds", type=int, default=1, help="labelled subsets drawn (sms, adult); default 1"
    )
    args = parser.parse_args()
    unknown = [name for name in args.datasets if name not in runs]
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; choose from {list(runs)}")
    for name in args.datasets or list(runs):
        found = runs[name](args.seeds)
        if found is not None:
            # read again before writing: another run may have written its datasets since
            results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
            results[name] = {"settings": SETTINGS, **found}
            if found.get("seeds"):
                results[name]["seed_summary"] = seed_summary(results[name])
            RESULTS.write_text(json.dumps(results, indent=2, default=float) + "\n")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    print()
    print("| dataset | labels | setting | test accuracy | test log-loss | pseudo rows / fold |")
    print("|---|---:|---|---:|---:|---:|")
    for name, entry in results.items():
        for row in entry["rows"]:
            n = entry["all_labels"] if row["setting"] == "all labels" else entry["labelled"]
            extra = row.get("pseudo_rows_per_fold")
            print(
                f"| {name} | {n} | {row['setting']} | {row['test_accuracy']:.4f} | "
                f"{row['test_log_loss']:.4f} | {'' if extra is None else f'{extra:.0f}'} |"
            )
    for name, entry in results.items():
        summary = entry.get("seed_summary")
        if summary:
            acc, ll = summary["test_accuracy"], summary["test_log_loss"]
            print(
                f"{name}, mean over {summary['seeds']} labelled draws: accuracy "
                f"{acc['few labels']:.4f} -> {acc[PSEUDO]:.4f}, log-loss "
                f"{ll['few labels']:.4f} -> {ll[PSEUDO]:.4f}"
            )


if __name__ == "__main__":
    main()
