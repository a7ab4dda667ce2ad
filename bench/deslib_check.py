"""Dynamic selection against DESlib: the same predictions, the same neighbours, the same output?

    .venv/bin/python bench/deslib_check.py [--dataset letter|digits] [--jitter S] [--json PATH]

Builds a pool on a real dataset (letter recognition: 10,000 training rows, 10,000 test
rows, 26 classes; or scikit-learn's digits for a quick run): 5-fold out-of-fold
probabilities of eight diverse scikit-learn and LightGBM members (``cross_val_predict``)
and test probabilities of the same members fit on all training rows, cached in
``bench/.cache/deslib_<dataset>.npz``. The DSEL is the out-of-fold rows.

Each ensemblex dynamic-selection combiner is fit on the out-of-fold predictions and
features; DESlib 0.3.7 (in /work/deslibvenv, run through ``bench/deslib_runner.py``) is fit
on the same rows with each member wrapped to answer with its saved predictions, and is given
exactly the feature matrix the combiner stores (the features encoded by
``ensemblex.combiners.features``, in float32), so both search neighbours in the same space.
For every method and voting rule the table shows: the share of test rows whose label
(argmax) is DESlib's ``predict``, the largest absolute difference from DESlib's
``predict_proba``, and the predict times (DESlib's ``predict_proba`` against our
``predict`` on the same test rows). The share of test rows whose k nearest DSEL rows are the
same in both is printed first.

Exact ties: letter's features are small integers, so many DSEL rows lie at exactly the same
distance from a test row. Both sides get the same neighbour *sets*, but scikit-learn 1.5.2
(DESlib's environment) and ours order tied rows differently. KNORA-E (which reads the order)
and META-DES (whose meta-features are per neighbour position, and whose meta-training drops
each DSEL row's first neighbour) can then differ on a few rows; ``--jitter 1e-3`` breaks the
ties and shows what remains when the neighbours are the same in the same order.

Speed: both sides make one exact scikit-learn neighbour query for the rows where members
disagree (the same algorithm; it takes the same time in scikit-learn 1.5.2 and 1.9), and
DESlib 0.3.7 computes these methods' competences with array operations too, so that query
bounds the ratio: the table's speed-up is about 1x, not the 20x of a per-sample loop.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
DATA = HERE.parents[1] / "shared" / "data"
DESLIB_PYTHON = Path("/work/deslibvenv/bin/python")
SEED = 0


# ---------------------------------------------------------------- the pool
def load(name: str) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
    """Training and test features and labels (codes 0..K-1) of a dataset."""
    from sklearn.model_selection import train_test_split

    if name == "letter":
        frame = pd.read_csv(DATA / "letter_recognition.csv")
        y = pd.Categorical(frame.pop("lettr")).codes.astype(np.int64)
        X = frame
        test_size = 0.5
    elif name == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True, as_frame=True)
        y = y.to_numpy()
        test_size = 0.5
    else:
        raise ValueError(f"dataset must be 'letter' or 'digits', however: dataset={name!r}")
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=test_size, random_state=SEED, stratify=y
    )
    return X_tr.reset_index(drop=True), y_tr, X_te.reset_index(drop=True), y_te


def members() -> dict:
    """Eight diverse members: linear, neighbours, bagged and boosted trees, Bayes, a net."""
    from lightgbm import LGBMClassifier
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    return {
        "logreg": make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=300)),
        "knn": make_pipeline(StandardScaler(), KNeighborsClassifier(15)),
        "forest": RandomForestClassifier(100, min_samples_leaf=2, random_state=SEED),
        "extra_trees": ExtraTreesClassifier(100, min_samples_leaf=2, random_state=SEED),
        "bayes": GaussianNB(),
        "tree": DecisionTreeClassifier(max_depth=10, random_state=SEED),
        "lightgbm": LGBMClassifier(
            n_estimators=60, num_leaves=15, learning_rate=0.1, random_state=SEED, verbose=-1
        ),
        "mlp": make_pipeline(
            StandardScaler(),
            MLPClassifier((64,), max_iter=300, early_stopping=True, random_state=SEED),
        ),
    }


def build_pool(name: str) -> dict:
    """Out-of-fold and test probabilities of the members (cached)."""
    path = CACHE / f"deslib_{name}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    X_tr, y_tr, X_te, y_te = load(name)
    cv = StratifiedKFold(5, shuffle=True, random_state=SEED)
    oof, test = [], []
    for member_name, est in members().items():
        start = time.perf_counter()
        oof.append(cross_val_predict(est, X_tr, y_tr, cv=cv, method="predict_proba"))
        test.append(est.fit(X_tr, y_tr).predict_proba(X_te))
        print(f"  {member_name}: {time.perf_counter() - start:.1f} s", flush=True)
    pool = {
        "X_train": X_tr.to_numpy(dtype=np.float64),
        "y_train": y_tr,
        "X_test": X_te.to_numpy(dtype=np.float64),
        "y_test": y_te,
        "P_train": np.stack(oof, axis=1),
        "P_test": np.stack(test, axis=1),
        "members": np.array(list(members())),
    }
    CACHE.mkdir(exist_ok=True)
    np.savez_compressed(path, **pool)
    return pool


# ---------------------------------------------------------------- both sides
METHODS = ("knora_e", "knora_u", "des_p", "ola", "lca", "knop", "meta_des")


def ours(name: str, voting: str):
    """Our combiner of a DESlib method name, with the voting rule where it has one."""
    from ensemblex.combiners import dynamic

    combiner = dynamic.candidates()[name]
    return combiner.set_params(voting=voting) if "voting" in combiner.get_params() else combiner


def run_deslib(pool: dict, reference, k: int) -> dict:
    """DESlib's outputs on the DSEL the ``reference`` combiner stores (see the runner)."""
    from ensemblex.combiners.features import encode_features

    dsel = {
        "X_dsel": reference.dsel_features_.astype(np.float64),
        "y_dsel": reference.dsel_labels_,
        # the members' DSEL probabilities rounded as the combiners store them
        "P_dsel": pool["P_train"].astype(np.float32).astype(np.float64),
        "X_test": encode_features(reference.feature_encoding_, pool["X_test"]),
        "P_test": pool["P_test"],
    }
    CACHE.mkdir(exist_ok=True)
    pool_path, out_path = CACHE / "deslib_pool.npz", CACHE / "deslib_out.npz"
    np.savez(pool_path, **dsel)
    subprocess.run(
        [str(DESLIB_PYTHON), str(HERE / "deslib_runner.py"), str(pool_path), str(out_path), str(k)],
        check=True,
    )
    with np.load(out_path) as data:
        return {key: data[key] for key in data.files} | {"X_test_encoded": dsel["X_test"]}


def softmax_of_weighted_mean(combiner, pool: dict, X_encoded: np.ndarray, ours_out: np.ndarray):
    """What DESlib's soft KNORA-U / KNOP output is in terms of ours: on rows where members
    disagree, ``softmax(sum_j w_j p_j / m)`` where ours is ``sum_j w_j p_j / sum_j w_j``."""
    from scipy.special import softmax

    from ensemblex.combiners.dynamic import correct_at, predicted_classes

    P = pool["P_test"]
    predicted = predicted_classes(P)
    rows = ~(predicted == predicted[:, :1]).all(axis=1)
    if combiner.uses_features == "none":
        neighbours = combiner._profile_neighbours(P[rows], combiner._profile_k())
    else:
        neighbours = combiner._feature_neighbours(X_encoded[rows])
    weights = correct_at(combiner.dsel_correct_, neighbours).sum(axis=1)
    out = ours_out.copy()
    # DESlib's mean of w_j p_j over members: ours times sum(w) / m (0 where sum(w) is 0)
    out[rows] = softmax(ours_out[rows] * weights.sum(axis=1, keepdims=True) / P.shape[1], axis=1)
    return out


def timed_predict(combiner, P, X, repeats: int = 5) -> tuple[np.ndarray, float]:
    """The combiner's predictions and its fastest of ``repeats`` predict times (the first
    call also builds the neighbour index)."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = combiner.predict(P, X=X)
        seconds.append(time.perf_counter() - start)
    return out, min(seconds)


def compare(pool: dict, k: int = 7) -> tuple[dict, list[dict]]:
    """Fit ours and DESlib's on the same DSEL, predict the test rows, compare."""
    from ensemblex import Predictions

    names = [str(s) for s in pool["members"]]
    n_classes = pool["P_train"].shape[2]
    task = "binary" if n_classes == 2 else "multiclass"
    classes = np.arange(n_classes)
    P_train = Predictions(pool["P_train"], names, task, classes=classes)
    P_test = Predictions(pool["P_test"], names, task, classes=classes)
    X_train, X_test = pool["X_train"], pool["X_test"]
    reference = ours("knora_e", "hard").set_params(k=k).fit(P_train, pool["y_train"], X=X_train)
    deslib = run_deslib(pool, reference, k)
    X_encoded = deslib["X_test_encoded"]
    ours_neighbours = reference._feature_neighbours(X_encoded)
    same_rows = (ours_neighbours == deslib["neighbours"]).all(axis=1)
    # the one neighbour query our KNORA-E makes (rows where members disagree), timed alone:
    # DESlib makes the same query, so it bounds the speed-up
    predicted = pool["P_test"].argmax(axis=2)
    disagree = X_encoded[~(predicted == predicted[:, :1]).all(axis=1)]
    query_seconds = []
    for _ in range(5):
        start = time.perf_counter()
        reference._feature_neighbours(disagree)
        query_seconds.append(time.perf_counter() - start)
    summary = {
        "rows_where_members_disagree": len(disagree),
        "neighbour_query_seconds": min(query_seconds),
        "test_rows": len(X_test),
        "dsel_rows": len(X_train),
        "members": len(names),
        "classes": n_classes,
        "k": k,
        "same_neighbours": float(same_rows.mean()),
        "same_neighbour_sets": float(
            (np.sort(ours_neighbours, axis=1) == np.sort(deslib["neighbours"], axis=1))
            .all(axis=1)
            .mean()
        ),
    }
    rows = []
    for name in METHODS:
        for voting in ("hard", "soft"):
            key = f"{name}__{voting}"
            if f"{key}__proba" not in deslib:
                continue
            combiner = ours(name, voting).set_params(k=k).fit(P_train, pool["y_train"], X=X_train)
            out, seconds = timed_predict(combiner, P_test, X_test)
            theirs, label = deslib[f"{key}__proba"], deslib[f"{key}__label"]
            comparable = out
            if voting == "soft" and name in ("knora_u", "knop"):
                comparable = softmax_of_weighted_mean(combiner, pool, X_encoded, out)
            nan_rows = np.isnan(theirs).any(axis=1)
            same_label = out.argmax(axis=1) == label
            rows.append(
                {
                    "method": name,
                    "voting": voting if "voting" in combiner.get_params() else "-",
                    "same_label": float(same_label.mean()),
                    "same_label_same_neighbours": float(same_label[same_rows].mean()),
                    "max_abs_proba_diff": float(
                        np.abs(comparable[~nan_rows] - theirs[~nan_rows]).max()
                    ),
                    "rows_proba_diff_over_1e-9": float(
                        (np.abs(comparable - theirs).max(axis=1) > 1e-9)[~nan_rows].mean()
                    ),
                    "proba_compared_through_softmax": comparable is not out,
                    "deslib_nan_rows": int(nan_rows.sum()),
                    "same_label_outside_nan_rows": float(same_label[~nan_rows].mean()),
                    "ours_seconds": seconds,
                    "deslib_seconds": float(deslib[f"{key}__seconds"]),
                    "speedup": float(deslib[f"{key}__seconds"]) / seconds,
                }
            )
    return summary, rows


def print_table(summary: dict, rows: list[dict]) -> None:
    print(
        f"DSEL {summary['dsel_rows']} rows, {summary['test_rows']} test rows, "
        f"{summary['members']} members, {summary['classes']} classes, k={summary['k']}; "
        f"test rows with DESlib's k neighbours in the same order: "
        f"{summary['same_neighbours']:.2%} (same sets {summary['same_neighbour_sets']:.2%}); "
        f"one neighbour query for the {summary['rows_where_members_disagree']} rows where "
        f"members disagree: {summary['neighbour_query_seconds']:.3f} s"
    )
    head = (
        f"{'method':<9} {'voting':<6} {'same label':>10} {'max|dp|':>9} {'dp rows':>8} "
        f"{'NaN rows':>8} "
        f"{'ours s':>8} {'DESlib s':>8} {'speedup':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        mark = "*" if r["proba_compared_through_softmax"] else " "
        print(
            f"{r['method']:<9} {r['voting']:<6} {r['same_label']:>10.4%} "
            f"{r['max_abs_proba_diff']:>8.1e}{mark} {r['rows_proba_diff_over_1e-9']:>8.2%} "
            f"{r['deslib_nan_rows']:>8d} "
            f"{r['ours_seconds']:>8.4f} {r['deslib_seconds']:>8.4f} {r['speedup']:>6.1f}x"
        )
    print(
        "* DESlib's soft KNORA-U/KNOP is softmax(mean of w_j p_j); ours is the normalised "
        "weighted mean: compared after that transformation of ours.\n"
        "dp rows: test rows whose probabilities differ by more than 1e-9.\n"
        "NaN rows: DESlib's hard KNORA-U/KNOP with no member right on any neighbour (0/0); "
        "left out of max|dp|; ours counts every member's vote there."
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="letter", choices=["letter", "digits"])
    parser.add_argument("--k", type=int, default=7)
    parser.add_argument(
        "--jitter",
        type=float,
        default=0.0,
        help="add N(0, JITTER) noise to the features (train and test) to break exact "
        "distance ties, whose order scikit-learn 1.5.2 and ours break differently",
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    pool = build_pool(args.dataset)
    if args.jitter > 0:
        rng = np.random.default_rng(SEED)
        for key in ("X_train", "X_test"):
            pool[key] = pool[key] + rng.normal(0.0, args.jitter, pool[key].shape)
    summary, rows = compare(pool, args.k)
    summary.update(dataset=args.dataset, jitter=args.jitter)
    print_table(summary, rows)
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "methods": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
