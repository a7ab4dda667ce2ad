"""Benchmark: every ensemblex combiner against AutoGluon and scikit-learn on the same OOF matrix.

    .venv/bin/pip install -e ".[bench]" && .venv/bin/python bench/combiners.py

For California housing, adult, churn and letter recognition (../shared/data) it builds a
zoo of 32 members with 5-fold OOF predictions (cached in bench/.cache by bench/zoo.py),
then fits each combiner on the OOF rows and scores it on the fixed test split, measured in
the same run: ensemblex's combiners, AutoGluon's ``EnsembleSelection`` (25 iterations, as in
AutoGluon) and scikit-learn's ``StackingRegressor``/``StackingClassifier`` (default final
estimator) over the same member predictions. The *oracle* fits convex weights on the test
rows themselves; "gain captured" is (best single - combiner) / (best single - oracle): above
100% a combiner beats every convex combination (stacking can), n/a where convex weights gain
under 0.1% over the best single member on test.
Metric: RMSE for regression, log-loss for classification (accuracy is printed too).
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from autogluon.core.metrics import log_loss as ag_log_loss
from autogluon.core.metrics import root_mean_squared_error as ag_rmse
from autogluon.core.models.greedy_ensemble.ensemble_selection import EnsembleSelection
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.ensemble import StackingClassifier, StackingRegressor

from ensemblex import AutoCombiner, BestSingle, GreedySelection, Mean, Stacking, Weighted
from ensemblex.metrics import get_metric
from ensemblex.tables import read_table
from ensemblex.tasks import encode_labels

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zoo import build

DATASETS = ["california", "adult", "churn", "letter"]
TARGETS = {
    "california": "median_house_value",
    "adult": "income",
    "churn": "Exited",
    "letter": "lettr",
}
RESULTS = Path(__file__).resolve().parent / "results"
ORACLE = "oracle: convex weights fit on test"


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
def run_dataset(name: str) -> dict:
    folder = build(name)
    oof = read_table(folder / "oof.parquet", target=TARGETS[name])
    P = oof.predictions
    test = read_table(
        folder / "test.parquet",
        target=TARGETS[name],
        task=P.task,
        classes=P.classes,
        members=list(P.members),
    )
    Pt = test.predictions
    encode = (lambda y: encode_labels(y, P.classes)) if P.task != "regression" else np.asarray
    y, y_test = encode(oof.y), encode(test.y)
    metric = get_metric("auto", P.task)
    accuracy = get_metric("accuracy", P.task) if P.task != "regression" else None
    rows = {}

    def record(label, seconds, pred, extra=None):
        rows[label] = {"seconds": seconds, "test": metric.score(y_test, pred)}
        if accuracy is not None:
            rows[label]["accuracy"] = accuracy.score(y_test, pred)
        rows[label].update(extra or {})

    ours = {
        "best single (OOF)": BestSingle(),
        "mean": Mean(),
        "weighted": Weighted(),
        "greedy (25 it.)": GreedySelection(),
        "stacking (ridge/logistic)": Stacking(),
        "stacking, four-stage": Stacking.regularized(),
        "AutoCombiner": AutoCombiner(),
    }
    fitted = {}
    for label, combiner in ours.items():
        seconds, fitted[label] = timed(lambda c=combiner: c.fit(P, oof.y))
        extra = {}
        if label == "AutoCombiner":
            extra = {"chosen": fitted[label].method_, "nested": fitted[label].scores_}
        if label == "stacking, four-stage":
            st = fitted[label]
            extra = {
                "dropped": len(st.dropped_members_),
                "cond_before": st.condition_number_before_,
                "cond_after": st.condition_number_after_,
            }
        record(label, seconds, fitted[label].predict(Pt), extra)

    ag_seconds, ag = timed(lambda: autogluon_selection(P.values, y, P.task))
    record(
        "AutoGluon EnsembleSelection", ag_seconds, np.einsum("nmk,m->nk", Pt.values, ag.weights_)
    )
    greedy = fitted["greedy (25 it.)"]
    rows["AutoGluon EnsembleSelection"]["same_weights"] = bool(
        np.allclose(greedy.weights_, ag.weights_)
    )

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
    best = rows["best single (OOF)"]["test"]
    possible = sign * (best - rows[ORACLE]["test"])
    for row in rows.values():
        row["gain_captured"] = (
            sign * (best - row["test"]) / possible if possible > 1e-3 * abs(best) else np.nan
        )
    return {
        "task": P.task,
        "metric": metric.name,
        "n_oof": P.n_samples,
        "n_test": Pt.n_samples,
        "n_members": P.n_members,
        "rows": rows,
    }


# ---------------------------------------------------------------- report
def print_dataset(name: str, res: dict) -> None:
    print(
        f"\n### {name} ({res['task']}, {res['n_members']} members, {res['n_oof']} OOF rows, "
        f"{res['n_test']} test rows; test {res['metric']})\n"
    )
    acc = res["task"] != "regression"
    print(
        f"| combiner | test {res['metric']} |"
        + (" test accuracy |" if acc else "")
        + " gain captured | fit s |"
    )
    print("|---|---:|" + ("---:|" if acc else "") + "---:|---:|")
    for label, row in res["rows"].items():
        note = f" (chose {row['chosen']})" if "chosen" in row else ""
        cells = [f"{label}{note}", f"{row['test']:.5g}"]
        if acc:
            cells.append(f"{row['accuracy']:.4f}")
        gain = "n/a" if np.isnan(row["gain_captured"]) else f"{row['gain_captured']:.0%}"
        cells += [gain, "-" if np.isnan(row["seconds"]) else f"{row['seconds']:.3f}"]
        print("| " + " | ".join(cells) + " |")


def check(res: dict) -> list[str]:
    rows = res["rows"]
    sign = -1 if res["metric"] in ("r2",) else 1
    best, mean, auto = (rows[k]["test"] for k in ("best single (OOF)", "mean", "AutoCombiner"))
    greedy, ag = rows["greedy (25 it.)"], rows["AutoGluon EnsembleSelection"]
    return [
        f"AutoCombiner vs best single: {sign * (auto - best) / abs(best):+.3%} "
        f"({'ok' if sign * (auto - best) <= 0.002 * abs(best) else 'LOSES'}, limit +0.2%)",
        f"AutoCombiner beats mean: {'yes' if sign * (auto - mean) < 0 else 'NO'}",
        f"greedy vs AutoGluon: same weights {'yes' if ag['same_weights'] else 'no'}, "
        f"test diff {abs(greedy['test'] - ag['test']) / abs(ag['test']):.4%}, "
        f"speed-up {ag['seconds'] / greedy['seconds']:.1f}x",
    ]


def main(names: list[str]) -> None:
    RESULTS.mkdir(exist_ok=True)
    results = {}
    for name in names:
        results[name] = run_dataset(name)
        print_dataset(name, results[name])
        for line in check(results[name]):
            print(f"- {line}")
        sys.stdout.flush()
    (RESULTS / "combiners.json").write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main(sys.argv[1:] or DATASETS)
