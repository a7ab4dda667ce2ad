"""Treelite twins of tree members predict what the members predict."""

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb
from member_cases import fold_context, tables
from sklearn.ensemble import ExtraTreesClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression

from ensemblex.members import member

treelite = pytest.importorskip("treelite")
from ensemblex.members.compiled_trees import TOLERANCE, compile_member  # noqa: E402


@pytest.mark.parametrize(
    ("task", "estimator"),
    [
        ("binary", lgb.LGBMClassifier(n_estimators=30, num_leaves=7, verbose=-1)),
        ("multiclass", lgb.LGBMClassifier(n_estimators=20, num_leaves=7, verbose=-1)),
        ("regression", lgb.LGBMRegressor(n_estimators=30, num_leaves=7, verbose=-1)),
        ("binary", xgb.XGBClassifier(n_estimators=30, max_depth=3)),
        ("multiclass", xgb.XGBClassifier(n_estimators=20, max_depth=3)),
        ("binary", ExtraTreesClassifier(25, min_samples_leaf=2, random_state=0)),
        ("regression", RandomForestRegressor(25, random_state=0)),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_twins_predict_as_the_members(task, estimator, churn_table):
    X, y, X_test = tables(task, churn_table)
    fitted = member("trees", estimator).fit(X, y, fold_context(task, X, y))
    expected = fitted.predict(X_test)
    assert compile_member(fitted, X_test.head(50))
    assert fitted.twin_ is not None
    got = np.concatenate([fitted.predict(X_test.iloc[[i]]) for i in range(len(X_test))])
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE[fitted.family] + 1e-12)
    twin = fitted.twin_.predict(fitted.encode(X_test))  # all rows through Treelite
    np.testing.assert_allclose(twin, expected, rtol=0, atol=TOLERANCE[fitted.family] + 1e-12)


def test_other_members_are_left_alone(churn_table):
    X, y, X_test = tables("binary", churn_table)
    fitted = member("linear", LogisticRegression(max_iter=500)).fit(
        X, y, fold_context("binary", X, y)
    )
    assert not compile_member(fitted, X_test.head(20))
    assert getattr(fitted, "twin_", None) is None


def test_rows_with_infinities_go_to_the_library(churn_table):
    X, y, X_test = tables("binary", churn_table)
    fitted = member("trees", ExtraTreesClassifier(10, random_state=0)).fit(
        X, y, fold_context("binary", X, y)
    )
    assert compile_member(fitted, X_test.head(20))
    Z = fitted.encode(X_test.head(1))
    Z[0, 0] = np.inf
    assert fitted.twin_.predict(Z) is None
    with pytest.raises(ValueError):  # scikit-learn refuses what the twin would have answered
        fitted._predict_encoded(Z)
