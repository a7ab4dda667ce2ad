"""Numpy twins of nearest-neighbour members predict what scikit-learn predicts."""

import numpy as np
import pandas as pd
import pytest
from member_cases import fold_context, tables
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from ensemblex.members import member
from ensemblex.members.compiled_neighbors import MAX_ROWS, TOLERANCE, compile_neighbors


@pytest.mark.parametrize(
    ("task", "estimator"),
    [
        ("binary", KNeighborsClassifier(25, weights="distance", algorithm="brute")),
        ("multiclass", KNeighborsClassifier(7)),
        ("regression", KNeighborsRegressor(10, weights="distance")),
        ("regression", KNeighborsRegressor(5, algorithm="kd_tree")),
    ],
    ids=["binary-distance", "multiclass-uniform", "regression-distance", "regression-kdtree"],
)
def test_twins_predict_as_the_members(task, estimator, churn_table):
    X, y, X_test = tables(task, churn_table)
    fitted = member("knn", estimator).fit(X, y, fold_context(task, X, y))
    expected = fitted.predict(X_test)
    assert compile_neighbors(fitted, X_test.head(30))
    got = np.concatenate([fitted.predict(X_test.iloc[[i]]) for i in range(len(X_test))])
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    Z = fitted.encode(X_test)
    got, tied = fitted.twin_.predict_untied(Z)
    assert tied.mean() < 0.5
    np.testing.assert_allclose(got[~tied], expected[~tied], rtol=0, atol=TOLERANCE)
    assert fitted.twin_.max_rows == MAX_ROWS  # larger batches stay with scikit-learn


def test_ties_and_infinities_are_left_to_scikit_learn(churn_table):
    X, y, X_test = tables("binary", churn_table)
    X2, y2 = pd.concat([X, X.head(50)], ignore_index=True), np.concatenate([y, 1 - y[:50]])
    fitted = member("knn", KNeighborsClassifier(1)).fit(X2, y2, fold_context("binary", X2, y2))
    assert compile_neighbors(fitted, X_test.head(30))
    Z = fitted.encode(X.head(5))  # each has two training rows at distance 0, one per label
    assert fitted.twin_.predict(Z) is None
    np.testing.assert_array_equal(fitted.predict(X.head(5)), fitted.predict_model(Z))
    Z = fitted.encode(X_test.head(1))
    Z[0, 0] = np.inf
    assert fitted.twin_.predict(Z) is None
    with pytest.raises(ValueError):
        fitted._predict_encoded(Z)  # scikit-learn's own refusal


def test_a_query_on_a_training_row_weighs_only_that_row(churn_table):
    X, y, _ = tables("binary", churn_table)
    estimator = KNeighborsClassifier(5, weights="distance")
    fitted = member("knn", estimator).fit(X, y, fold_context("binary", X, y))
    assert compile_neighbors(fitted, X.head(20))
    got = fitted.twin_.predict(fitted.encode(X.head(40)))[:, 0, :]
    classes = np.unique(y)
    expected = np.zeros_like(got)
    expected[np.arange(40), np.searchsorted(classes, y[:40])] = 1.0
    # a training row's own label (rows repeated in the table would share the weight)
    repeated = X.head(40).duplicated(keep=False).to_numpy()
    np.testing.assert_array_equal(got[~repeated], expected[~repeated])


def test_other_metrics_are_left_to_scikit_learn(churn_table):
    X, y, X_test = tables("binary", churn_table)
    estimator = KNeighborsClassifier(5, metric="manhattan")
    fitted = member("knn", estimator).fit(X, y, fold_context("binary", X, y))
    assert not compile_neighbors(fitted, X_test.head(20))
    assert getattr(fitted, "twin_", None) is None
