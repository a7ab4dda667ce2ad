"""Real prediction sets for the tests: small zoos cross-fitted on scikit-learn's datasets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict, train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from ensemblex import Predictions


@dataclass
class Zoo:
    """OOF and test predictions of a small zoo, with their targets (labels)."""

    oof: Predictions
    y: np.ndarray
    test: Predictions
    y_test: np.ndarray


def _zoo(X, y, members: dict, task: str, classes=None) -> Zoo:
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=0.3, random_state=0, stratify=None if task == "regression" else y
    )
    method = "predict" if task == "regression" else "predict_proba"
    cv = (KFold if task == "regression" else StratifiedKFold)(5, shuffle=True, random_state=0)
    oof, test = [], []
    for est in members.values():
        oof.append(cross_val_predict(est, X_tr, y_tr, cv=cv, method=method))
        test.append(getattr(est.fit(X_tr, y_tr), method)(X_te))
    shape = (
        (lambda a: np.stack(a, axis=1)[..., None])
        if task == "regression"
        else (lambda a: np.stack(a, axis=1))
    )
    names = list(members)
    return Zoo(
        Predictions(shape(oof), names, task, classes=classes),
        y_tr,
        Predictions(shape(test), names, task, classes=classes),
        y_te,
    )


@pytest.fixture(scope="session")
def regression_zoo() -> Zoo:
    X, y = load_diabetes(return_X_y=True)
    members = {
        "ridge": make_pipeline(StandardScaler(), Ridge(1.0)),
        "ridge_dup": make_pipeline(StandardScaler(), Ridge(1.01)),
        "knn": make_pipeline(StandardScaler(), KNeighborsRegressor(10)),
        "forest": RandomForestRegressor(50, min_samples_leaf=3, random_state=0),
        "tree": DecisionTreeRegressor(max_depth=3, random_state=0),
    }
    return _zoo(X, y, members, "regression")


@pytest.fixture(scope="session")
def binary_zoo() -> Zoo:
    X, y = load_breast_cancer(return_X_y=True)
    labels = np.where(y == 1, "benign", "malignant")
    members = {
        "logreg": make_pipeline(StandardScaler(), LogisticRegression(C=0.1)),
        "logreg_dup": make_pipeline(StandardScaler(), LogisticRegression(C=0.101)),
        "knn": make_pipeline(StandardScaler(), KNeighborsClassifier(15)),
        "forest": RandomForestClassifier(50, random_state=0),
        "bayes": GaussianNB(),
        "tree": DecisionTreeClassifier(max_depth=3, random_state=0),
    }
    return _zoo(X, labels, members, "binary", classes=np.array(["benign", "malignant"]))


@pytest.fixture(scope="session")
def multiclass_zoo() -> Zoo:
    X, y = load_digits(return_X_y=True)
    X, y = X[:900], y[:900]
    members = {
        "logreg": make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=500)),
        "knn": make_pipeline(StandardScaler(), KNeighborsClassifier(10)),
        "forest": RandomForestClassifier(60, random_state=0),
        "bayes": GaussianNB(),
        "tree": DecisionTreeClassifier(max_depth=6, random_state=0),
    }
    return _zoo(X, y, members, "multiclass", classes=np.arange(10))


@pytest.fixture(params=["regression", "binary", "multiclass"])
def zoo(request) -> Zoo:
    """Each task's zoo in turn."""
    return request.getfixturevalue(f"{request.param}_zoo")


@pytest.fixture(scope="session")
def churn_table():
    """The bundled churn table (real data shipped with the package), first 1,500 rows."""
    import pandas as pd

    from ensemblex.cli.app import example_path

    return pd.read_csv(example_path("churn_modelling.csv")).head(1500)
