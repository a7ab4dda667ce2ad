"""Adaptive combination against static combination and DESlib, on the pools of adaptive_pool.py.

    .venv/bin/python bench/adaptive.py [--datasets stroke wine ...] [--readme] [--tables-only]

For every dataset: ten members cross-fitted with 5 folds (bench/adaptive_pool.py), the
dynamic selection set (DSEL) is the out-of-fold rows, and every combiner is fitted on them
and scored on the held-out test rows (fold-consistent: each fold model's predictions
combined, then averaged). Static: the best single member, the mean, greedy selection,
stacking; dynamic selection (ola, lca, knora_e, knora_u, des_p, meta_des, knop); routing
(fuzzy_routing, gate); fusion (stack_features, stack_features_lgbm); label-free with 0
labels (dawid_skene, ds_proba, sml, consensus); and AutoCombiner given the features.

DESlib 0.3.7 is the peer: it fails on scikit-learn >= 1.6, so it runs in its own virtual
environment (``bench/.cache/deslib-venv``, created here with scikit-learn 1.5.2 on first use)
through bench/deslib_runner.py, over the same pool and DSEL: its members are thin
estimators answering with our saved predictions, and it gets the same encoded features our
combiners compute. It predicts from the mean of the fold models (it has no fold-consistent
mode), so our KNORA-E/U are also run that way to check they give DESlib's predictions on
the same neighbours; the prediction time of both on 10,000 rows is measured on adult.

Writes ``bench/results/adaptive.json``; ``--readme`` rewrites the README's tables between
``<!-- adaptive:start -->`` and ``<!-- adaptive:end -->``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.neighbors import NearestNeighbors

sys.path.insert(0, str(Path(__file__).resolve().parent))
from adaptive_pool import DATASETS, POOL_CACHE, REGRESSION, build
from ensemblex.combiners import AutoCombiner, available_candidates
from ensemblex.combiners.features import encode_features, fit_feature_encoding
from ensemblex.metrics import get_metric
from ensemblex.predictions import Predictions
from readme import replace_section

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "adaptive.json"
DESLIB_VENV = POOL_CACHE / "deslib-venv"
DESLIB_REQUIREMENTS = ["deslib==0.3.7", "scikit-learn==1.5.2", "numpy<2.3"]
STATIC = ("best", "mean", "greedy", "stack")
DYNAMIC = ("ola", "lca", "knora_e", "knora_u", "des_p", "meta_des", "knop")
ROUTING = ("fuzzy_routing", "gate")
FUSION = ("stack_features", "stack_features_lgbm")
LABEL_FREE = ("dawid_skene", "ds_proba", "sml", "consensus")
DESLIB_METHODS = ("knora_e", "knora_u", "meta_des", "des_p", "ola", "lca", "knop")
TIMING_ROWS = 10_000


def deslib_python() -> Path:
    """DESlib's interpreter, its environment created on first use."""
    python = DESLIB_VENV / "bin" / "python"
    if not python.exists():
        print("creating DESlib's environment (scikit-learn 1.5.2) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(DESLIB_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *DESLIB_REQUIREMENTS], check=True
        )
    return python


def run_deslib(X_dsel, y_dsel, P_dsel, X_test, P_test) -> dict[str, np.ndarray]:
    """DESlib's methods on the given DSEL and test rows (bench/deslib_runner.py)."""
    with tempfile.TemporaryDirectory() as tmp:
        pool, out = Path(tmp) / "pool.npz", Path(tmp) / "out.npz"
        np.savez(pool, X_dsel=X_dsel, y_dsel=y_dsel, P_dsel=P_dsel, X_test=X_test, P_test=P_test)
        subprocess.run(
            [str(deslib_python()), str(HERE / "deslib_runner.py"), str(pool), str(out)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        with np.load(out) as data:
            return {key: data[key] for key in data.files}


def scores(task: str, y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Test log-loss (or RMSE), accuracy and balanced accuracy."""
    if task == "regression":
        return {"rmse": get_metric("rmse", task).score(y, proba)}
    out = {
        "log_loss": get_metric("log_loss", task).score(y, proba),
        "accuracy": float(np.mean(proba.argmax(axis=1) == y)),
    }
    out["balanced_accuracy"] = get_metric("balanced_accuracy", task).score(y, proba)
    return out


def our_methods(task: str, only=None) -> dict:
    """Every combiner compared, unfitted, by name (those that need classes left out for
    regression); ``only``: just these names."""
    pool = available_candidates("auto", 0)
    names = [*STATIC, *ROUTING, *FUSION]
    if task != "regression":
        names += [*DYNAMIC, *LABEL_FREE]
    methods = {name: pool[name] for name in names if name in pool}
    # AutoCombiner given the features: the default candidates plus those that read them
    methods["auto"] = AutoCombiner(random_state=0)
    return {k: v for k, v in methods.items() if only is None or k in only}


def run_dataset(name: str, only=None, previous: dict | None = None) -> dict:
    data = np.load(build(name))
    members = data["members"].tolist()
    classes = data["classes"] if data["classes"].size else None
    task = "regression" if classes is None else ("binary" if len(classes) == 2 else "multiclass")
    y, y_test = data["y"], data["y_test"]
    P = Predictions(data["oof"], members, task, classes=classes)
    folds = [Predictions(f, members, task, classes=classes) for f in data["test_folds"]]
    F, F_test = data["features"], data["features_test"]
    labels = classes[y] if classes is not None else y
    result = {"task": task, "rows": [len(y), len(y_test)], "members": members, "methods": {}}
    if previous is not None and only is not None:
        result = {**previous, "methods": dict(previous["methods"])}
    for method, combiner in our_methods(task, only).items():
        free = not combiner.needs_labels
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted = combiner.fit(P, None if free else labels, X=F)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        proba = fitted.predict_folds(folds, X=F_test)
        predict_s = time.perf_counter() - start
        row = {**scores(task, y_test, proba), "fit_seconds": fit_s, "predict_seconds": predict_s}
        if method == "auto":
            row["chosen"] = fitted.method_
        result["methods"][method] = row
        print(f"  {name} {method}: {_short(row)}", flush=True)
    if task != "regression" and only is None:
        result["deslib"] = compare_deslib(name, data, P, folds, y, y_test, classes)
    return result


def deslib_for(name: str) -> dict:
    """:func:`compare_deslib` on a dataset's cached pool."""
    data = np.load(build(name))
    classes = data["classes"]
    task = "binary" if len(classes) == 2 else "multiclass"
    P = Predictions(data["oof"], data["members"].tolist(), task, classes=classes)
    return compare_deslib(name, data, P, None, data["y"], data["y_test"], classes)


def compare_deslib(name, data, P, folds, y, y_test, classes) -> dict:
    """DESlib's methods over the same pool and DSEL; ours on the same (mean) test inputs."""
    F, F_test = data["features"], data["features_test"]
    # the matrix our combiners measure distances in: their own encoding of F
    encoding = fit_feature_encoding(F)
    Z, Z_test = encode_features(encoding, F), encode_features(encoding, F_test)
    mean_test = np.mean(data["test_folds"], axis=0)
    theirs = run_deslib(Z, y, P.values, Z_test, mean_test)
    test = Predictions(mean_test, P.members, P.task, classes=classes)
    pool = available_candidates("auto", 0)
    out = {}
    for method in DESLIB_METHODS:
        key = f"{method}__hard"
        if f"{key}__proba" not in theirs:
            continue
        proba, label = theirs[f"{key}__proba"], theirs[f"{key}__label"]
        row = {**scores(P.task, y_test, proba), "predict_seconds": float(theirs[f"{key}__seconds"])}
        if method in pool:
            # DESlib's rule: a hard vote where the method votes (ours votes soft by default)
            same_rule = pool[method]
            if "voting" in same_rule.get_params():
                same_rule.set_params(voting="hard")
            fitted = same_rule.fit(P, classes[y], X=F)
            ours = fitted.predict(test, X=F_test)
            row["same_label"] = float(np.mean(ours.argmax(axis=1) == label))
            row["max_proba_difference"] = float(np.max(np.abs(ours - proba)))
            if fitted.uses_features == "required":
                # where both found the same neighbours in the same order (distance ties and
                # our float32 copy of the DSEL can order near-equal neighbours differently)
                neighbours = fitted._feature_neighbours(Z_test)
                same = (neighbours == theirs["neighbours"]).all(axis=1)
                row["same_neighbours"] = float(same.mean())
                row["same_label_same_neighbours"] = float(
                    np.mean(ours[same].argmax(axis=1) == label[same])
                )
                row["max_proba_difference_same_neighbours"] = float(
                    np.max(np.abs(ours[same] - proba[same]), initial=0.0)
                )
        out[method] = row
        print(f"  {name} deslib {method}: {_short(row)}", flush=True)
    return out


def timing(name: str = "adult", methods=("knora_e", "knora_u", "des_p", "meta_des")) -> dict:
    """Predict seconds on 10,000 test rows, ours against DESlib's, on the same pool."""
    data = np.load(build(name))
    members = data["members"].tolist()
    classes = data["classes"]
    task = "binary" if len(classes) == 2 else "multiclass"
    P = Predictions(data["oof"], members, task, classes=classes)
    rows = np.arange(TIMING_ROWS) % len(data["y_test"])
    F, F_test = data["features"], data["features_test"][rows]
    mean_test = np.mean(data["test_folds"], axis=0)[rows]
    encoding = fit_feature_encoding(F)
    Z, Z_test = encode_features(encoding, F), encode_features(encoding, F_test)
    theirs = run_deslib(Z, data["y"], P.values, Z_test, mean_test)
    pool = available_candidates("auto", 0)
    test = Predictions(mean_test, members, task, classes=classes)
    # the floor: the one exact neighbour query both sides make (all rows, and only the rows
    # where the members disagree, the ones dynamic selection has to look at)
    votes = mean_test.argmax(axis=2)
    disagree = ~(votes == votes[:, :1]).all(axis=1)
    index = NearestNeighbors(n_neighbors=7).fit(Z)
    floor = {}
    for label, rows_ in (("all_rows", slice(None)), ("disagreeing_rows", disagree)):
        best = np.inf
        for _ in range(3):
            start = time.perf_counter()
            index.kneighbors(Z_test[rows_], return_distance=False)
            best = min(best, time.perf_counter() - start)
        floor[label] = best
    print(f"  timing neighbour query: {floor}", flush=True)
    out = {}
    for method in methods:
        combiner = pool[method]
        if "voting" in combiner.get_params():
            combiner.set_params(voting="hard")  # DESlib's rule, so both do the same work
        fitted = combiner.fit(P, classes[data["y"]], X=F)
        fitted.predict(test.take(np.arange(10)), X=F_test[:10])  # index built
        best = np.inf
        for _ in range(3):
            start = time.perf_counter()
            fitted.predict(test, X=F_test)
            best = min(best, time.perf_counter() - start)
        deslib = float(theirs[f"{method}__hard__seconds"])
        out[method] = {"ours": best, "deslib": deslib, "speedup": deslib / best}
        print(f"  timing {method}: ours {best:.3f} s, DESlib {deslib:.2f} s", flush=True)
    return {
        "dataset": name,
        "rows": TIMING_ROWS,
        "disagreeing_rows": int(disagree.sum()),
        "neighbour_query_seconds": floor,
        "methods": out,
    }


def _short(row: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())


# ---------------------------------------------------------------- tables
def tables(results: dict) -> str:
    """The README's tables: accuracy and log-loss per method and dataset, DESlib beside."""
    names = [n for n in results["datasets"] if results["datasets"][n]["task"] != "regression"]
    lines = []
    for metric, label, better in (
        ("accuracy", "test accuracy (higher is better)", max),
        ("log_loss", "test log-loss (lower is better)", min),
    ):
        lines += [f"**{label}**", "", "| method | " + " | ".join(names) + " |"]
        lines.append("|---|" + "---|" * len(names))
        methods = list(results["datasets"][names[0]]["methods"])
        rows = [
            (m, lambda d, m=m, metric=metric: d["methods"].get(m, {}).get(metric)) for m in methods
        ]
        rows += [
            (
                f"DESlib {m}",
                lambda d, m=m, metric=metric: d.get("deslib", {}).get(m, {}).get(metric),
            )
            for m in DESLIB_METHODS
        ]
        cells = {n: [get(results["datasets"][n]) for _, get in rows] for n in names}
        winners = {n: better(v for v in cells[n] if v is not None) for n in names}
        for i, (method, _) in enumerate(rows):
            out = []
            for n in names:
                v = cells[n][i]
                text = "" if v is None else f"{v:.4f}"
                out.append(f"**{text}**" if v is not None and v == winners[n] else text)
            lines.append(f"| {method} | " + " | ".join(out) + " |")
        lines.append("")
    lines += [
        "**Same neighbours, same predictions as DESlib** (our method with DESlib's hard voting, "
        "on the same mean test predictions): share of test rows where both found the same "
        "neighbours in the same order; on those rows, the share with DESlib's label / the "
        "largest difference in a probability (KNOP: output-profile neighbours, all rows)",
        "",
        "| method | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for method in DESLIB_METHODS:
        cells = []
        for n in names:
            row = results["datasets"][n].get("deslib", {}).get(method, {})
            if "same_neighbours" in row:
                same = row["same_label_same_neighbours"]
                diff = row["max_proba_difference_same_neighbours"]
                cells.append(f"{row['same_neighbours']:.1%}: {same:.2%} / {diff:.2g}")
            elif "same_label" in row:
                cells.append(f"{row['same_label']:.2%} / {row['max_proba_difference']:.2g}")
            else:
                cells.append("")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    timing = results.get("timing")
    if timing:
        floor = timing["neighbour_query_seconds"]
        lines += [
            "",
            f"**Predict seconds on {timing['rows']:,} {timing['dataset']} test rows** (the "
            "combination only: both sides read saved member predictions; the exact neighbour "
            f"query alone takes {floor['disagreeing_rows']:.3f} s for the "
            f"{timing['disagreeing_rows']:,} rows where members disagree, "
            f"{floor['all_rows']:.3f} s for all rows)",
            "",
            "| method | ensemblex | DESlib | DESlib / ensemblex |",
            "|---|---|---|---|",
        ]
        for method, row in timing["methods"].items():
            lines.append(
                f"| {method} | {row['ours']:.3f} | {row['deslib']:.3f} | {row['speedup']:.2f}x |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="*", default=[*DATASETS, *REGRESSION])
    parser.add_argument("--readme", action="store_true")
    parser.add_argument("--tables-only", action="store_true")
    parser.add_argument("--methods", nargs="*", help="rerun only these of ours (kept results)")
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--deslib-only", action="store_true", help="rerun only DESlib's side")
    args = parser.parse_args()
    if args.tables_only:
        results = json.loads(RESULTS.read_text())
    else:
        results = {"datasets": {}}
        if RESULTS.exists():
            results = json.loads(RESULTS.read_text())
        for name in args.datasets:
            print(f"{name}:", flush=True)
            previous = results["datasets"].get(name)
            if args.deslib_only:
                if previous is not None and previous["task"] != "regression":
                    previous["deslib"] = deslib_for(name)
                    RESULTS.write_text(json.dumps(results, indent=2))
                continue
            results["datasets"][name] = run_dataset(name, args.methods, previous)
            RESULTS.write_text(json.dumps(results, indent=2))
        if not args.no_timing:
            results["timing"] = timing()
            RESULTS.write_text(json.dumps(results, indent=2))
    text = tables(results)
    print(text)
    if args.readme:
        replace_section("adaptive", text)


if __name__ == "__main__":
    main()
