"""Benchmark: every ensemblex combiner against AutoGluon and scikit-learn on the same OOF matrix.

    python3 -m venv bench/.cache/ag-venv && bench/.cache/ag-venv/bin/pip install -e . autogluon.core
    bench/.cache/ag-venv/bin/python bench/combiners.py [names] [--readme] [--tables-only]

(its own environment: AutoGluon pins an older pandas than ``.venv``'s).

For ten datasets from ../shared/data (every classification and regression table but the
graph; MNIST with a cheaper zoo, SMS spam with TF-IDF text members) it builds a zoo with
5-fold OOF predictions (cached in bench/.cache by bench/zoo.py), then fits each combiner on
the OOF rows and scores it on the fixed test split, measured in the same run: ensemblex's
combiners, AutoGluon's ``EnsembleSelection`` (25 iterations, as in AutoGluon) and
scikit-learn's ``StackingRegressor``/``StackingClassifier`` (default final estimator) over
the same member predictions.

Each of our combiners is scored two ways on test: on the mean of the fold models' test
predictions ("averaged inputs"), and fold-consistently (combine each fold model's test
predictions, then average: ``Combiner.predict_folds``); AutoCombiner predicts the second
way. Peers predict from averaged inputs, as their users would (for AutoGluon's weighted
mean the two are the same). The *oracle* fits convex weights on the test rows themselves.
"Gain" is the relative improvement over the best single member (chosen on OOF rows).
Metric: RMSE for regression, log-loss for classification (accuracy and AUC are kept too).
The done-when checks of issue 12 are printed at the end. ``--readme`` puts the summary into
README.md; ``--tables-only`` rewrites the tables from bench/results/combiners.json.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from autogluon.core.metrics import log_loss as ag_log_loss
from autogluon.core.metrics import root_mean_squared_error as ag_rmse
from autogluon.core.models.greedy_ensemble.ensemble_selection import EnsembleSelection
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.ensemble import StackingClassifier, StackingRegressor
from sklearn.metrics import roc_auc_score

from ensemblex import AutoCombiner, BestSingle, GreedySelection, Mean, Pooling, Stacking, Weighted
from ensemblex.metrics import get_metric
from ensemblex.tables import from_frame, read_table
from ensemblex.tasks import encode_labels

sys.path.insert(0, str(Path(__file__).resolve().parent))
from readme import replace_section
from zoo import build

DATASETS = [
    "california",
    "diamonds",
    "adult",
    "churn",
    "stroke",
    "sms",
    "letter",
    "pendigits",
    "wine",
    "mnist",
]
TARGETS = {
    "california": "median_house_value",
    "diamonds": "price",
    "adult": "income",
    "churn": "Exited",
    "stroke": "stroke",
    "sms": "label",
    "letter": "lettr",
    "pendigits": "class",
    "wine": "quality",
    "mnist": "label",
}
RESULTS = Path(__file__).resolve().parent / "results"
ORACLE = "oracle: convex weights fit on test"
AUTO = "AutoCombiner"
AG = "AutoGluon EnsembleSelection"
BEST = "best single (OOF)"


# ---------------------------------------------------------------- scikit-learn peer
class PrecomputedMember(BaseEstimator):
    """A member whose predictions are columns of X, so scikit-learn's stacking can run on the
    same OOF matrix as everyone else (fitting it learns nothing)."""

    def __init__(self, index=0, n_outputs=1):
        self.index = index
        self.n_outputs = n_outputs

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def _block(self, X):
        return X[:, self.index * self.n_outputs : (self.index + 1) * self.n_outputs]

    def predict(self, X):
        block = self._block(X)
        return block[:, 0] if self.n_outputs == 1 else self.classes_[block.argmax(axis=1)]

    def predict_proba(self, X):
        return self._block(X)


class PrecomputedRegressor(RegressorMixin, PrecomputedMember):
    pass


class PrecomputedClassifier(ClassifierMixin, PrecomputedMember):
    pass


def sklearn_stacking(task, m, k):
    if task == "regression":
        members = [(f"m{j}", PrecomputedRegressor(j, 1)) for j in range(m)]
        return StackingRegressor(members, cv=5)
    members = [(f"m{j}", PrecomputedClassifier(j, k)) for j in range(m)]
    return StackingClassifier(members, cv=5)


# ---------------------------------------------------------------- AutoGluon peer
def autogluon_selection(values, y, task):
    problem = {"regression": "regression", "binary": "binary", "multiclass": "multiclass"}[task]
    metric = ag_rmse if task == "regression" else ag_log_loss
    if task == "multiclass":
        preds = [values[:, j] for j in range(values.shape[1])]
    else:
        preds = [values[:, j, -1] for j in range(values.shape[1])]
    selector = EnsembleSelection(
        ensemble_size=25, problem_type=problem, metric=metric, random_state=np.random.RandomState(0)
    )
    return selector.fit(preds, y)


def timed(fn, repeats=3):
    """Best-of-``repeats`` seconds (one run when a run takes over 2 s) and the last result."""
    best, result = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
        if best > 2.0:
            break
    return best, result


# ---------------------------------------------------------------- one dataset
def load_zoo(name: str):
    """OOF table, averaged test table and one test Predictions per fold model."""
    folder = build(name)
    target = TARGETS[name]
    oof = read_table(folder / "oof.parquet", target=target)
    P = oof.predictions
    like = {"target": target, "task": P.task, "classes": P.classes, "members": list(P.members)}
    test = read_table(folder / "test.parquet", **like)
    wide = pd.read_parquet(folder / "test_folds.parquet")
    folds = [
        from_frame(part.drop(columns="fold").reset_index(drop=True), **like).predictions
        for _, part in wide.groupby("fold", sort=True)
    ]
    return oof, test, folds


def ours(random_state=0) -> dict:
    """Every candidate AutoCombiner compares, each alone, plus AutoCombiner itself."""
    rows = {
        BEST: BestSingle(),
        "mean": Mean(),
        "greedy (25 it.)": GreedySelection(),
        "weighted": Weighted(),
        "pooling": Pooling(),
        "stacking (ridge/logistic)": Stacking(random_state=random_state),
        "stacking, four-stage": Stacking.regularized(random_state=random_state),
        "AutoCombiner, no second level": AutoCombiner(ensemble=False),
        "AutoCombiner, argmin of nested scores": AutoCombiner(select="best"),
        AUTO: AutoCombiner(),
    }
    return rows


def run_dataset(name: str) -> dict:
    oof, test, test_folds = load_zoo(name)
    P, Pt = oof.predictions, test.predictions
    encode = (lambda y: encode_labels(y, P.classes)) if P.task != "regression" else np.asarray
    y, y_test = encode(oof.y), encode(test.y)
    metric = get_metric("auto", P.task)
    accuracy = get_metric("accuracy", P.task) if P.task != "regression" else None
    rows = {}

    def scores(pred) -> dict:
        out = {"test": metric.score(y_test, pred)}
        if accuracy is not None:
            out["accuracy"] = accuracy.score(y_test, pred)
        if P.task == "binary":
            out["auc"] = float(roc_auc_score(y_test, pred[:, 1]))
        return out

    def record(label, seconds, pred, folds_pred=None, extra=None):
        rows[label] = {"seconds": seconds, **scores(pred if folds_pred is None else folds_pred)}
        if folds_pred is not None:
            rows[label]["averaged_inputs"] = scores(pred)
        rows[label].update(extra or {})

    fitted = {}
    for label, combiner in ours().items():
        repeats = 1 if isinstance(combiner, AutoCombiner) else 3
        seconds, fitted[label] = timed(lambda c=combiner: clone(c).fit(P, oof.y), repeats)
        extra = {}
        if isinstance(combiner, AutoCombiner):
            auto = fitted[label]
            extra = {
                "chosen": auto.method_,
                "nested": auto.scores_,
                "nested_seconds": auto.fit_seconds_,
                "ensemble_weights": auto.ensemble_weights_,
            }
        if label == "stacking, four-stage":
            st = fitted[label]
            extra = {
                "dropped": len(st.dropped_members_),
                "cond_before": st.condition_number_before_,
                "cond_after": st.condition_number_after_,
            }
        model = fitted[label]
        record(label, seconds, model.predict(Pt), model.predict_folds(test_folds), extra)

    # Every candidate refit on all OOF rows, scored on test: what AutoCombiner could have
    # chosen, in hindsight (fold-consistent, as AutoCombiner predicts).
    auto = fitted[AUTO]
    hindsight = {}
    for cand in auto.scores_:
        model = auto.combiner_ if cand == auto.method_ else auto.candidate(cand).fit(P, oof.y)
        hindsight[cand] = metric.score(y_test, model.predict_folds(test_folds))
    rows[AUTO]["hindsight"] = hindsight

    ag_seconds, ag = timed(lambda: autogluon_selection(P.values, y, P.task))
    ag_pred = np.einsum("nmk,m->nk", Pt.values, ag.weights_)
    record(AG, ag_seconds, ag_pred)
    rows[AUTO]["vs_autogluon_se"] = bootstrap_se(
        metric, y_test, auto.predict_folds(test_folds), ag_pred
    )
    greedy = fitted["greedy (25 it.)"]
    rows[AG]["same_weights"] = bool(np.allclose(greedy.weights_, ag.weights_))

    X, Xt = P.values.reshape(P.n_samples, -1), Pt.values.reshape(Pt.n_samples, -1)
    sk = sklearn_stacking(P.task, P.n_members, P.n_outputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk_seconds, sk = timed(lambda: sk.fit(X, y), repeats=1)
    sk_pred = sk.predict(Xt)[:, None] if P.task == "regression" else sk.predict_proba(Xt)
    record("scikit-learn Stacking", sk_seconds, sk_pred)

    # The oracle sees the test labels: convex weights fit on the test rows themselves.
    record(ORACLE, np.nan, Weighted().fit(Pt, test.y).predict(Pt))

    sign = -1 if metric.greater_is_better else 1
    best = rows[BEST]["test"]
    for row in rows.values():
        row["gain"] = sign * (best - row["test"]) / abs(best)
    majority = None
    if P.task != "regression":
        prior = np.bincount(y, minlength=len(P.classes)) / len(y)
        majority = scores(np.tile(prior, (len(y_test), 1)))
    return {
        "task": P.task,
        "metric": metric.name,
        "n_oof": P.n_samples,
        "n_test": Pt.n_samples,
        "n_members": P.n_members,
        "n_folds": len(test_folds),
        "majority_class": majority,
        "rows": rows,
    }


def bootstrap_se(metric, y, ours_pred, peer_pred, draws=200, seed=0) -> float:
    """Standard error of (ours - peer) / peer on test, over bootstrap resamples of test rows:
    how much of a difference the test split's size can tell apart."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(draws):
        rows = rng.integers(0, len(y), len(y))
        a, b = metric.score(y[rows], ours_pred[rows]), metric.score(y[rows], peer_pred[rows])
        diffs.append((a - b) / abs(b))
    return float(np.std(diffs, ddof=1))


# ---------------------------------------------------------------- report
def dataset_table(name: str, res: dict) -> str:
    lines = []
    add = lines.append
    add(
        f"\n#### {name} ({res['task']}, {res['n_members']} members, {res['n_oof']} OOF rows, "
        f"{res['n_test']} test rows; test {res['metric']})\n"
    )
    acc = res["task"] != "regression"
    add(
        f"| combiner | test {res['metric']} | averaged inputs |"
        + (" test accuracy |" if acc else "")
        + " gain over best | fit s |"
    )
    add("|---|---:|---:|" + ("---:|" if acc else "") + "---:|---:|")
    for label, row in res["rows"].items():
        note = f" (chose {row['chosen']})" if "chosen" in row else ""
        averaged = row.get("averaged_inputs", {}).get("test")
        cells = [
            f"{label}{note}",
            f"{row['test']:.5g}",
            "" if averaged is None else f"{averaged:.5g}",
        ]
        if acc:
            cells.append(f"{row['accuracy']:.4f}")
        cells += [
            f"{row['gain']:+.2%}",
            "-" if np.isnan(row["seconds"]) else f"{row['seconds']:.3f}",
        ]
        add("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_rows(results: dict) -> list[dict]:
    out = []
    for name, res in results.items():
        rows = res["rows"]
        auto, ag = rows[AUTO], rows[AG]
        sign = -1 if res["metric"] == "r2" else 1
        hind = auto["hindsight"]
        best_cand = min(hind.values()) if sign > 0 else max(hind.values())
        out.append(
            {
                "dataset": name,
                "task": res["task"],
                "metric": res["metric"],
                "best": rows[BEST]["test"],
                "ag": ag["test"],
                "auto": auto["test"],
                "auto_gain": auto["gain"],
                "ag_gain": ag["gain"],
                "auto_vs_ag": sign * (auto["test"] - ag["test"]) / abs(ag["test"]),
                "auto_vs_ag_se": auto["vs_autogluon_se"],
                "auto_seconds": auto["seconds"],
                "ag_seconds": ag["seconds"],
                "chosen": auto["chosen"],
                "to_hindsight": sign * (auto["test"] - best_cand) / abs(best_cand),
                "hindsight_gain": sign * (rows[BEST]["test"] - best_cand) / abs(rows[BEST]["test"]),
            }
        )
    return out


def summary_text(results: dict) -> str:
    table = summary_rows(results)
    lines = []
    add = lines.append
    add(
        "| dataset | task | test metric | best single | AutoGluon greedy | AutoCombiner (chosen) "
        "| gain: AutoGluon | gain: ours | ours vs AutoGluon (± bootstrap SE) | fit s: AutoGluon "
        "| fit s: ours |"
    )
    add("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in table:
        add(
            f"| {r['dataset']} | {r['task']} | {r['metric']} | {r['best']:.5g} | {r['ag']:.5g} "
            f"| {r['auto']:.5g} ({r['chosen']}) | {r['ag_gain']:+.2%} | {r['auto_gain']:+.2%} "
            f"| {r['auto_vs_ag']:+.2%} ± {r['auto_vs_ag_se']:.2%} | {r['ag_seconds']:.2f} "
            f"| {r['auto_seconds']:.2f} |"
        )
    vs = np.array([r["auto_vs_ag"] for r in table])
    gains = np.array([r["auto_gain"] for r in table])
    ag_gains = np.array([r["ag_gain"] for r in table])
    ratio = np.median(gains) / np.median(ag_gains) if np.median(ag_gains) > 0 else np.inf
    ceiling = np.median([r["hindsight_gain"] for r in table])
    checks = [
        f"datasets: {len(table)} (target >= 10)",
        f"never worse than AutoGluon by > 0.1%: worst {vs.max():+.3%} "
        f"({'ok' if vs.max() <= 0.001 else 'FAIL'})",
        f"strictly better than AutoGluon: {(vs < 0).sum()} of {len(vs)} = {(vs < 0).mean():.0%} "
        f"({'ok' if (vs < 0).mean() >= 0.7 else 'FAIL'}, target >= 70%)",
        f"never worse than the best single member by > 0.2%: worst {-gains.min():+.3%} "
        f"({'ok' if gains.min() >= -0.002 else 'FAIL'})",
        f"median gain over the best single: ours {np.median(gains):+.2%}, AutoGluon "
        f"{np.median(ag_gains):+.2%}, ratio {ratio:.2f} ({'ok' if ratio >= 1.5 else 'FAIL'}, "
        "target >= 1.5); choosing the best of our candidates on test, in hindsight, on every "
        f"dataset would give {ceiling:+.2%}, ratio "
        f"{ceiling / np.median(ag_gains) if np.median(ag_gains) > 0 else np.inf:.2f}",
    ]
    for r in table:
        if r["dataset"] == "letter":
            checks.append(
                f"letter: chosen {r['chosen']} within {r['to_hindsight']:+.2%} of the best "
                f"candidate in hindsight ({'ok' if r['to_hindsight'] <= 0.03 else 'FAIL'}, "
                f"target <= 3%); AutoCombiner fit {r['auto_seconds']:.1f} s "
                f"({'ok' if r['auto_seconds'] <= 15 else 'FAIL'}, target <= 15 s) against "
                f"AutoGluon's {r['ag_seconds']:.1f} s"
            )
    add("")
    for line in checks:
        add(f"- {line}")
    return "\n".join(lines)


def fold_consistency_text(results: dict) -> str:
    """Test loss of the non-linear combiners predicted fold by fold against from the mean of
    the fold models, on every classification zoo (weighted means give the same numbers)."""
    labels = ("pooling", "stacking (ridge/logistic)", "stacking, four-stage", AUTO)
    lines = [
        "| dataset | " + " | ".join(f"{label}: fold by fold / averaged" for label in labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    for name, res in results.items():
        if res["task"] == "regression":
            continue
        cells = []
        for label in labels:
            row = res["rows"][label]
            cells.append(f"{row['test']:.5g} / {row['averaged_inputs']['test']:.5g}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    names = [a for a in argv if not a.startswith("--")]
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "combiners.json"
    results = json.loads(path.read_text()) if path.exists() and names else {}
    results = {k: v for k, v in results.items() if "hindsight" in v["rows"].get(AUTO, {})}
    if "--tables-only" in argv:  # rewrite the tables from the results file, fit nothing
        results = json.loads(path.read_text())
        names = []
    for name in names or ([] if "--tables-only" in argv else DATASETS):
        results[name] = run_dataset(name)
        print(dataset_table(name, results[name]), flush=True)
        path.write_text(json.dumps(results, indent=2, default=float))
    ordered = {name: results[name] for name in DATASETS if name in results}
    summary = summary_text(ordered)
    print(summary)
    tables = "\n".join(dataset_table(name, res) for name, res in ordered.items())
    folds = fold_consistency_text(ordered)
    (RESULTS / "combiners.md").write_text(
        "# bench/combiners.py: every combiner on every zoo\n\n"
        + f"{summary}\n\n{folds}\n{tables}\n"
    )
    print(folds)
    if "--readme" in argv:
        replace_section("combiners", summary)
        replace_section("fold-consistency", folds)


if __name__ == "__main__":
    main(sys.argv[1:])
