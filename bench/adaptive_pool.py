"""The pools of bench/adaptive.py: ten diverse members cross-fitted on each dataset, plus the
encoded features that located every row.

Each dataset from ``../shared/data`` keeps the split of bench/zoo.py (20% test, seed 0; adult
and pendigits their own test files; MNIST its last 2,000 digits); ``adult5`` is adult with the
positives subsampled to 5% of the rows (train and test alike), for an imbalanced case. The
members are a dynamic-selection pool in the literature's sense: strong and weak learners of
different kinds (GBDTs, forests, a tree, kNN, linear, naive Bayes, an MLP), so that each is
right in different places. Written to ``bench/.cache/adaptive/<name>/pool.npz``: OOF
predictions ``oof`` (n, m, k), per-fold test predictions ``test_folds`` (folds, n_test, m, k),
labels, the features encoded by :mod:`ensemblex.combiners.features` (fitted on the training
rows) and the member names; rebuilt only when missing.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ensemblex.combiners.features import encode_features, fit_feature_encoding
from zoo import (
    CACHE,
    SEED,
    Dataset,
    _dense_encoder,
    _fit_fold,
    _imputed_tree_encoder,
    _tree_encoder,
    load_dataset,
)

POOL_CACHE = CACHE / "adaptive"
DATASETS = ("stroke", "wine", "adult5", "churn", "pendigits", "letter", "mnist", "adult")
REGRESSION = ("california",)
FOLDS = 5


def load(name: str) -> Dataset:
    """A dataset with its fixed split; ``adult5`` subsamples adult's positives to 5%."""
    if name != "adult5":
        return load_dataset(name)
    ds = load_dataset("adult")
    rng = np.random.default_rng(SEED)

    def five_percent(frame: pd.DataFrame) -> pd.DataFrame:
        positive = frame[ds.target].astype(str).str.contains(">")
        n_pos = round(int((~positive).sum()) * 5 / 95)
        keep = rng.choice(np.flatnonzero(positive), n_pos, replace=False)
        rows = np.sort(np.concatenate([np.flatnonzero(~positive), keep]))
        return frame.iloc[rows].reset_index(drop=True)

    return Dataset("adult5", "binary", ds.target, five_percent(ds.train), five_percent(ds.test))


def pool(task: str, name: str) -> dict[str, object]:
    """Ten members of different kinds (fewer boosting rounds on pixels and many classes)."""
    reg = task == "regression"
    rounds = 100 if name in ("mnist", "letter") else 200
    lgbm = LGBMRegressor if reg else LGBMClassifier
    forest = RandomForestRegressor if reg else RandomForestClassifier
    extra = ExtraTreesRegressor if reg else ExtraTreesClassifier
    tree = DecisionTreeRegressor if reg else DecisionTreeClassifier
    knn = KNeighborsRegressor if reg else KNeighborsClassifier
    mlp = MLPRegressor if reg else MLPClassifier
    quiet = {"verbose": -1, "n_jobs": 1, "random_state": SEED}
    members = {
        "lgbm": make_pipeline(
            _tree_encoder(), lgbm(n_estimators=rounds, learning_rate=0.05, **quiet)
        ),
        "lgbm_small": make_pipeline(
            _tree_encoder(), lgbm(n_estimators=40, num_leaves=7, learning_rate=0.1, **quiet)
        ),
        "rf": make_pipeline(
            _imputed_tree_encoder(),
            forest(n_estimators=100, min_samples_leaf=2, n_jobs=1, random_state=SEED),
        ),
        "et": make_pipeline(
            _imputed_tree_encoder(),
            extra(n_estimators=100, min_samples_leaf=2, n_jobs=1, random_state=SEED),
        ),
        "tree": make_pipeline(_imputed_tree_encoder(), tree(max_depth=8, random_state=SEED)),
        "knn": make_pipeline(_dense_encoder(), knn(n_neighbors=15)),
        "mlp": make_pipeline(
            _dense_encoder(),
            mlp(hidden_layer_sizes=(64,), max_iter=200, early_stopping=True, random_state=SEED),
        ),
    }
    if reg:
        members["ridge"] = make_pipeline(_dense_encoder(), Ridge(alpha=1.0))
    else:
        members["logreg"] = make_pipeline(_dense_encoder(), LogisticRegression(max_iter=500))
        members["naive_bayes"] = make_pipeline(_dense_encoder(), GaussianNB())
        members["knn_5"] = make_pipeline(_dense_encoder(), KNeighborsClassifier(n_neighbors=5))
    return members


def build(name: str, n_jobs: int = 2) -> Path:
    """Cross-fit the pool on ``name`` and write ``pool.npz``; return its path."""
    path = POOL_CACHE / name / "pool.npz"
    if path.exists():
        return path
    ds = load(name)
    X, X_test = ds.train.drop(columns=ds.target), ds.test.drop(columns=ds.target)
    for frame in (X, X_test):  # pandas 3 strings -> object, as the encoders select them
        for col in frame.columns:
            if not pd.api.types.is_numeric_dtype(frame[col]):
                frame[col] = frame[col].astype(object)
    y_raw, y_test_raw = ds.train[ds.target].to_numpy(), ds.test[ds.target].to_numpy()
    if ds.task == "regression":
        y, y_test, classes, k = y_raw.astype(float), y_test_raw.astype(float), None, 1
        splitter = KFold(FOLDS, shuffle=True, random_state=SEED)
    else:
        classes, y = np.unique(y_raw.astype(str), return_inverse=True)
        y_test = np.searchsorted(classes, y_test_raw.astype(str))
        k = len(classes)
        splitter = StratifiedKFold(FOLDS, shuffle=True, random_state=SEED)
    splits = list(splitter.split(X, y))
    members = pool(ds.task, name)
    jobs = [(m, f) for m in members for f in range(FOLDS)]
    start = time.perf_counter()
    results = Parallel(n_jobs=n_jobs)(
        delayed(_fit_fold)(members[m], X, y, *splits[f], X_test, ds.task, k) for m, f in jobs
    )
    names = list(members)
    oof = np.zeros((len(X), len(names), k))
    test_folds = np.zeros((FOLDS, len(X_test), len(names), k))
    for (m, f), (p_valid, p_test, _) in zip(jobs, results):
        j = names.index(m)
        oof[splits[f][1], j] = np.reshape(p_valid, (-1, k))
        test_folds[f, :, j] = np.reshape(p_test, (-1, k))
    encoding = fit_feature_encoding(X)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        oof=oof,
        test_folds=test_folds,
        y=y,
        y_test=y_test,
        features=encode_features(encoding, X).astype(np.float32),
        features_test=encode_features(encoding, X_test).astype(np.float32),
        members=np.array(names),
        classes=np.array([] if classes is None else classes.astype(str)),
    )
    tmp.replace(path)
    meta = {"task": ds.task, "rows": [len(X), len(X_test)], "seconds": time.perf_counter() - start}
    (path.parent / "pool.json").write_text(json.dumps(meta))
    return path


if __name__ == "__main__":
    for dataset in sys.argv[1:] or [*DATASETS, *REGRESSION]:
        t0 = time.perf_counter()
        build(dataset)
        print(f"{dataset}: {time.perf_counter() - t0:.0f} s", flush=True)
