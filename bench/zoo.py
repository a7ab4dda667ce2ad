"""Build the benchmark zoo: 5-fold out-of-fold and test predictions of ~32 diverse members.

Each dataset from ``../shared/data`` is split once (20% test, seed 0; adult and pendigits
use their own test files, MNIST its last 2,000 digits), every member is cross-fitted on the
training rows, and the result is written in the wide layout that ``ensemblex blend`` reads:
``bench/.cache/<dataset>/oof.parquet``, ``test.parquet`` (test predictions are the mean of
the fold models) and ``test_folds.parquet`` (each fold model's test predictions, with a
``fold`` column), all holding the target. Tabular tables get the ~32-member zoo, MNIST a
cheaper one (pixels make the big zoo slow), SMS spam a zoo of TF-IDF text models.

Run it through ``bench/combiners.py``; it only rebuilds a dataset whose cache is missing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from catboost import CatBoostClassifier, CatBoostRegressor
from joblib import Parallel, delayed
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.base import clone
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from xgboost import XGBClassifier, XGBRegressor

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CACHE = Path(__file__).resolve().parent / ".cache"
SEED = 0


@dataclass
class Dataset:
    name: str
    task: str
    target: str
    train: pd.DataFrame
    test: pd.DataFrame


def load_dataset(name: str) -> Dataset:
    """Load one benchmark dataset with its fixed train/test split."""
    if name == "adult":
        train = pd.read_csv(DATA / "adult_train.csv.gz", na_values="?")
        test = pd.read_csv(DATA / "adult_test.csv.gz", na_values="?")
        return Dataset(name, "binary", "income", train, test)
    if name == "california":
        df = pd.read_csv(DATA / "california_housing.csv.gz")
        task, target = "regression", "median_house_value"
    elif name == "churn":
        df = pd.read_csv(DATA / "churn_modelling.csv").drop(
            columns=["RowNumber", "CustomerId", "Surname"]
        )
        task, target = "binary", "Exited"
    elif name == "letter":
        df = pd.read_csv(DATA / "letter_recognition.csv")
        task, target = "multiclass", "lettr"
    elif name == "diamonds":
        df = pd.read_csv(DATA / "diamonds.csv.gz")
        task, target = "regression", "price"
    elif name == "stroke":
        df = pd.read_csv(DATA / "healthcare_stroke.csv").drop(columns=["id"])
        task, target = "binary", "stroke"
    elif name == "wine":
        df = pd.read_csv(DATA / "wine_quality.csv")
        task, target = "multiclass", "quality"
    elif name == "pendigits":
        train = pd.read_csv(DATA / "pendigits_train.csv")
        test = pd.read_csv(DATA / "pendigits_test.csv")
        return Dataset(name, "multiclass", "class", train, test)
    elif name == "mnist":
        # The same split as bench/uncertainty.py: the first 8,000 digits train, the rest test.
        df = pd.read_csv(DATA / "mnist_test.csv.gz")
        train, test = df.iloc[:8000], df.iloc[8000:]
        return Dataset(
            name, "multiclass", "label", train.reset_index(drop=True), test.reset_index(drop=True)
        )
    elif name == "sms":
        df = pd.read_csv(DATA / "sms_spam.csv")
        task, target = "binary", "label"
    else:
        raise ValueError(f"unknown dataset: {name!r}")
    stratify = None if task == "regression" else df[target]
    train, test = train_test_split(df, test_size=0.2, random_state=SEED, stratify=stratify)
    return Dataset(name, task, target, train.reset_index(drop=True), test.reset_index(drop=True))


# ---------------------------------------------------------------- preprocessing
def _tree_encoder() -> ColumnTransformer:
    """Ordinal codes for categoricals, numerics as they are (GBDTs handle NaN)."""
    return ColumnTransformer(
        [
            (
                "cat",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1
                ),
                make_column_selector(dtype_include=object),
            )
        ],
        remainder="passthrough",
    )


def _imputed_tree_encoder() -> ColumnTransformer:
    return ColumnTransformer(
        [
            (
                "cat",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1
                ),
                make_column_selector(dtype_include=object),
            ),
            ("num", SimpleImputer(strategy="median"), make_column_selector(dtype_exclude=object)),
        ]
    )


def _dense_encoder() -> ColumnTransformer:
    """Standardised numerics and one-hot categoricals, for linear, kNN and MLP members."""
    numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    categorical = make_pipeline(
        SimpleImputer(strategy="most_frequent"),
        OneHotEncoder(handle_unknown="ignore", min_frequency=20, sparse_output=False),
    )
    return ColumnTransformer(
        [
            ("num", numeric, make_column_selector(dtype_exclude=object)),
            ("cat", categorical, make_column_selector(dtype_include=object)),
        ]
    )


# ---------------------------------------------------------------- the zoo
def zoo(task: str) -> dict[str, object]:
    """About 32 members: GBDTs at several settings, forests, linear, kNN, MLP, near-duplicates."""
    reg = task == "regression"
    multi = task == "multiclass"
    # Multiclass boosting grows one tree per class per round: fewer rounds keep letter affordable.
    r = 0.5 if multi else 1.0

    def lgbm(n, lr, leaves, seed=SEED, **kw):
        cls = LGBMRegressor if reg else LGBMClassifier
        return make_pipeline(
            _tree_encoder(),
            cls(
                n_estimators=int(n * r),
                learning_rate=lr,
                num_leaves=leaves,
                random_state=seed,
                n_jobs=1,
                verbose=-1,
                **kw,
            ),
        )

    def xgb(n, lr, depth, **kw):
        cls = XGBRegressor if reg else XGBClassifier
        return make_pipeline(
            _tree_encoder(),
            cls(
                n_estimators=int(n * r),
                learning_rate=lr,
                max_depth=depth,
                n_jobs=1,
                tree_method="hist",
                random_state=SEED,
                **kw,
            ),
        )

    def cat(n, depth, lr):
        cls = CatBoostRegressor if reg else CatBoostClassifier
        return make_pipeline(
            _tree_encoder(),
            cls(
                iterations=int(n * r),
                depth=depth,
                learning_rate=lr,
                random_seed=SEED,
                verbose=0,
                thread_count=1,
                allow_writing_files=False,
            ),
        )

    def trees(cls, **kw):
        return make_pipeline(_imputed_tree_encoder(), cls(random_state=SEED, n_jobs=1, **kw))

    def dense(est):
        return make_pipeline(_dense_encoder(), est)

    hgb = HistGradientBoostingRegressor if reg else HistGradientBoostingClassifier
    rf = RandomForestRegressor if reg else RandomForestClassifier
    et = ExtraTreesRegressor if reg else ExtraTreesClassifier
    dt = DecisionTreeRegressor if reg else DecisionTreeClassifier
    knn = KNeighborsRegressor if reg else KNeighborsClassifier
    mlp = MLPRegressor if reg else MLPClassifier
    members = {
        "lgbm_lr05_l31": lgbm(400, 0.05, 31),
        "lgbm_lr05_l31_seed1": lgbm(400, 0.05, 31, seed=1, subsample=0.9, subsample_freq=1),
        "lgbm_lr1_l15": lgbm(200, 0.1, 15),
        "lgbm_lr03_l63": lgbm(500, 0.03, 63, colsample_bytree=0.7),
        "lgbm_lr2_l7": lgbm(150, 0.2, 7),
        "lgbm_dart_l31": lgbm(200, 0.1, 31, boosting_type="dart"),
        "xgb_d4": xgb(300, 0.1, 4),
        "xgb_d6": xgb(300, 0.05, 6, subsample=0.8),
        "xgb_d8": xgb(200, 0.05, 8, colsample_bytree=0.6),
        "cat_d4": cat(400, 4, 0.1),
        "cat_d6": cat(400, 6, 0.08),
        "cat_d8": cat(300, 8, 0.08),
        "hgb_default": make_pipeline(_tree_encoder(), hgb(random_state=SEED)),
        "hgb_slow": make_pipeline(
            _tree_encoder(), hgb(learning_rate=0.05, max_iter=300, random_state=SEED)
        ),
        "rf_sqrt": trees(rf, n_estimators=200, max_features="sqrt", min_samples_leaf=1),
        "rf_half": trees(rf, n_estimators=200, max_features=0.5, min_samples_leaf=2),
        "rf_sqrt_seed1": make_pipeline(
            _imputed_tree_encoder(),
            rf(n_estimators=200, max_features="sqrt", random_state=1, n_jobs=1),
        ),
        "et_sqrt": trees(et, n_estimators=200, max_features="sqrt"),
        "et_full": trees(et, n_estimators=200, max_features=1.0, min_samples_leaf=2),
        "tree_d6": make_pipeline(_imputed_tree_encoder(), dt(max_depth=6, random_state=SEED)),
        "tree_d12": make_pipeline(
            _imputed_tree_encoder(), dt(max_depth=12, min_samples_leaf=5, random_state=SEED)
        ),
        "knn_5": dense(knn(n_neighbors=5)),
        "knn_15": dense(knn(n_neighbors=15, weights="distance")),
        "knn_16": dense(knn(n_neighbors=16, weights="distance")),
        "knn_50": dense(knn(n_neighbors=50)),
        "mlp_64": dense(
            mlp(hidden_layer_sizes=(64,), max_iter=200, early_stopping=True, random_state=SEED)
        ),
        "mlp_128_64": dense(
            mlp(hidden_layer_sizes=(128, 64), max_iter=200, early_stopping=True, random_state=SEED)
        ),
        "mlp_128_64_seed1": dense(
            mlp(hidden_layer_sizes=(128, 64), max_iter=200, early_stopping=True, random_state=1)
        ),
    }
    if reg:
        members |= {
            "ridge_1": dense(Ridge(alpha=1.0)),
            "ridge_100": dense(Ridge(alpha=100.0)),
            "ridge_1_dup": dense(Ridge(alpha=1.01)),
            "knn_100": dense(knn(n_neighbors=100)),
        }
    else:
        members |= {
            "logreg_c1": dense(LogisticRegression(C=1.0, max_iter=500)),
            "logreg_c001": dense(LogisticRegression(C=0.01, max_iter=500)),
            "logreg_c1_dup": dense(LogisticRegression(C=1.01, max_iter=500)),
            "naive_bayes": dense(GaussianNB()),
        }
    return members


def fast_zoo(task: str) -> dict[str, object]:
    """15 members cheap enough on 784 pixel columns: boosting, forests, kNN, linear, MLPs."""
    from sklearn.decomposition import PCA

    def lgbm(n, lr, leaves, seed=SEED, **kw):
        return LGBMClassifier(
            n_estimators=n,
            learning_rate=lr,
            num_leaves=leaves,
            random_state=seed,
            n_jobs=1,
            verbose=-1,
            **kw,
        )

    def pca_then(est, k=50):
        return make_pipeline(StandardScaler(), PCA(k, random_state=SEED), est)

    return {
        "lgbm_lr1_l15": lgbm(100, 0.1, 15, colsample_bytree=0.3),
        "lgbm_lr2_l31": lgbm(60, 0.2, 31, colsample_bytree=0.3, seed=1),
        "xgb_d4": XGBClassifier(
            n_estimators=60,
            learning_rate=0.2,
            max_depth=4,
            n_jobs=1,
            tree_method="hist",
            colsample_bytree=0.3,
            random_state=SEED,
        ),
        "rf_sqrt": RandomForestClassifier(200, random_state=SEED, n_jobs=1),
        "rf_sqrt_seed1": RandomForestClassifier(200, min_samples_leaf=2, random_state=1, n_jobs=1),
        "et_sqrt": ExtraTreesClassifier(200, random_state=SEED, n_jobs=1),
        "tree_d12": DecisionTreeClassifier(max_depth=12, min_samples_leaf=5, random_state=SEED),
        "knn_3_pca": pca_then(KNeighborsClassifier(3, weights="distance")),
        "knn_10_pca": pca_then(KNeighborsClassifier(10, weights="distance")),
        "knn_30_pca": pca_then(KNeighborsClassifier(30)),
        "logreg_c01": make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=300)),
        "logreg_c1_pca": pca_then(LogisticRegression(C=1.0, max_iter=500), 100),
        "naive_bayes_pca": pca_then(GaussianNB(), 30),
        "mlp_128": make_pipeline(
            StandardScaler(),
            MLPClassifier((128,), max_iter=100, early_stopping=True, random_state=SEED),
        ),
        "mlp_256_128_pca": pca_then(
            MLPClassifier((256, 128), max_iter=100, early_stopping=True, random_state=1), 100
        ),
    }


def text_zoo(task: str) -> dict[str, object]:
    """14 text members: word and character TF-IDF with linear models, naive Bayes, kNN, trees."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.compose import make_column_transformer
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.linear_model import SGDClassifier
    from sklearn.naive_bayes import ComplementNB, MultinomialNB
    from sklearn.svm import LinearSVC

    def on_text(vectorizer, est, *steps):
        return make_pipeline(make_column_transformer((vectorizer, "text")), *steps, est)

    def words(**kw):
        return TfidfVectorizer(sublinear_tf=True, min_df=2, **kw)

    def chars(**kw):
        return TfidfVectorizer(
            analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2, **kw
        )

    def svd(k=100):
        return TruncatedSVD(k, random_state=SEED)

    return {
        "word_logreg_c10": on_text(words(), LogisticRegression(C=10.0, max_iter=1000)),
        "word_logreg_c1": on_text(words(), LogisticRegression(C=1.0, max_iter=1000)),
        "word12_logreg_c10": on_text(
            words(ngram_range=(1, 2)), LogisticRegression(C=10.0, max_iter=1000)
        ),
        "char_logreg_c10": on_text(chars(), LogisticRegression(C=10.0, max_iter=1000)),
        "char_logreg_c1": on_text(chars(), LogisticRegression(C=1.0, max_iter=1000)),
        "char_svm": on_text(chars(), CalibratedClassifierCV(LinearSVC(C=0.5), cv=3)),
        "word_svm": on_text(words(), CalibratedClassifierCV(LinearSVC(C=0.5), cv=3)),
        "word_sgd_huber": on_text(
            words(), SGDClassifier(loss="modified_huber", alpha=1e-4, random_state=SEED)
        ),
        "count_nb": on_text(CountVectorizer(min_df=1), MultinomialNB(alpha=0.1)),
        "word_cnb": on_text(words(), ComplementNB(alpha=0.3)),
        "char_nb": on_text(chars(), MultinomialNB(alpha=0.01)),
        "word_knn_15": on_text(
            words(), KNeighborsClassifier(15, weights="distance", metric="cosine")
        ),
        "char_svd_rf": on_text(
            chars(), RandomForestClassifier(300, random_state=SEED, n_jobs=1), svd()
        ),
        "word_svd_lgbm": on_text(
            words(),
            LGBMClassifier(n_estimators=200, learning_rate=0.05, verbose=-1, n_jobs=1),
            svd(),
        ),
    }


ZOOS = {"mnist": fast_zoo, "sms": text_zoo}


# ---------------------------------------------------------------- cross-fitting
def _fit_fold(est, X, y, train_idx, valid_idx, X_test, task, n_classes):
    est = clone(est)
    start = time.perf_counter()
    est.fit(X.iloc[train_idx], y[train_idx])
    fit_s = time.perf_counter() - start
    if task == "regression":
        return est.predict(X.iloc[valid_idx]), est.predict(X_test), fit_s

    def proba(rows):
        # A class missing from this fold's training rows (wine's 5 rows of quality 9) gets 0.
        full = np.zeros((len(rows), n_classes))
        full[:, est.classes_] = est.predict_proba(rows)
        return full

    return proba(X.iloc[valid_idx]), proba(X_test), fit_s


def build(name: str, folds: int = 5, n_jobs: int = 2) -> Path:
    """Cross-fit the zoo on one dataset and write its OOF and test tables; return the folder."""
    out = CACHE / name
    if all((out / f"{table}.parquet").exists() for table in ("oof", "test", "test_folds")):
        return out
    ds = load_dataset(name)
    X, X_test = ds.train.drop(columns=ds.target), ds.test.drop(columns=ds.target)
    y_raw = ds.train[ds.target].to_numpy()
    if ds.task == "regression":
        y, classes = y_raw.astype(float), None
        splitter = KFold(folds, shuffle=True, random_state=SEED)
    else:
        classes, y = np.unique(y_raw, return_inverse=True)
        splitter = StratifiedKFold(folds, shuffle=True, random_state=SEED)
    splits = list(splitter.split(X, y))
    members = ZOOS.get(name, zoo)(ds.task)
    jobs = [(m, f) for m in members for f in range(folds)]
    start = time.perf_counter()
    k = 1 if ds.task == "regression" else len(classes)
    results = Parallel(n_jobs=n_jobs, verbose=0)(
        delayed(_fit_fold)(members[m], X, y, *splits[f], X_test, ds.task, k) for m, f in jobs
    )
    oof = {m: np.zeros((len(X), k)) for m in members}
    test_folds = {m: np.zeros((folds, len(X_test), k)) for m in members}
    seconds = dict.fromkeys(members, 0.0)
    for (m, f), (p_valid, p_test, fit_s) in zip(jobs, results):
        oof[m][splits[f][1]] = np.reshape(p_valid, (-1, k))
        test_folds[m][f] = np.reshape(p_test, (-1, k))
        seconds[m] += fit_s
    test = {m: p.mean(axis=0) for m, p in test_folds.items()}
    stacked = {m: p.reshape(-1, k) for m, p in test_folds.items()}  # fold-major rows
    out.mkdir(parents=True, exist_ok=True)
    y_test = ds.test[ds.target].to_numpy()
    for table, preds, target, fold in (
        ("oof", oof, ds.train[ds.target].to_numpy(), None),
        ("test", test, y_test, None),
        ("test_folds", stacked, np.tile(y_test, folds), np.repeat(np.arange(folds), len(y_test))),
    ):
        wide = _wide(preds, ds.task, classes)
        wide.insert(0, ds.target, target)
        if fold is not None:
            wide.insert(0, "fold", fold)
        tmp = out / f".{table}.parquet.tmp"
        wide.to_parquet(tmp, index=False)
        tmp.replace(out / f"{table}.parquet")
    meta = {
        "task": ds.task,
        "target": ds.target,
        "fit_seconds": seconds,
        "zoo_seconds": time.perf_counter() - start,
    }
    (out / "zoo.json").write_text(json.dumps(meta, indent=2))
    return out


def _wide(preds: dict[str, np.ndarray], task: str, classes) -> pd.DataFrame:
    """The wide layout: one column per member, or ``<member>:<class>`` for multiclass."""
    cols = {}
    for m, p in preds.items():
        if task == "regression":
            cols[m] = p[:, 0]
        elif task == "binary":
            cols[m] = p[:, 1]
        else:
            for j, c in enumerate(classes):
                cols[f"{m}:{c}"] = p[:, j]
    return pd.DataFrame(cols)


if __name__ == "__main__":
    import sys

    for dataset in sys.argv[1:] or ["churn", "california", "adult", "letter"]:
        t = time.perf_counter()
        folder = build(dataset)
        print(f"{dataset}: {time.perf_counter() - t:.0f}s -> {folder}", flush=True)
