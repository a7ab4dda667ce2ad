"""LightGBMGaussian: a mean and a variance booster; Gaussian members in an ensemble."""

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from member_cases import fold_context
from sklearn.model_selection import KFold

from ensemblex.combiners import Mean, MixtureWeights
from ensemblex.ensemble import Ensemble, EnsembleRegressor
from ensemblex.members import family_class, load_member
from ensemblex.members.distributional import LightGBMGaussian


def heteroscedastic(n=1200, seed=0):
    """A category and two numbers; noise sd 2 where x > 0, 0.25 elsewhere."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "x": rng.uniform(-1, 1, n),
            "z": rng.uniform(-1, 1, n),
            "kind": rng.choice(["a", "b"], n),
        }
    )
    sd = np.where(X["x"] > 0, 2.0, 0.25)
    y = 3 * X["z"].to_numpy() + (X["kind"] == "b") + sd * rng.normal(size=n)
    return X, y, sd


def small(name="gbm", **kw):
    mean = lgb.LGBMRegressor(n_estimators=60, learning_rate=0.1, num_leaves=7, verbose=-1)
    variance = lgb.LGBMRegressor(
        n_estimators=60, learning_rate=0.05, num_leaves=4, min_child_samples=30, verbose=-1
    )
    return LightGBMGaussian(name, mean, variance_estimator=variance, **kw)


def test_mean_and_variance_follow_the_data_and_round_trip(tmp_path):
    X, y, _ = heteroscedastic()
    fitted = small().fit(X, y, fold_context("regression", X, y))
    X_new, y_new, sd_new = heteroscedastic(2000, seed=1)
    out = fitted.predict(X_new)
    assert out.shape == (2000, 1, 2) and fitted.outputs() == ("mean", "var")
    mean, var = out[:, 0, 0], out[:, 0, 1]
    # the mean is the mean booster's, refit on all the fold's rows
    encoded = fitted.encode(X_new)
    np.testing.assert_allclose(mean, fitted.model_.mean.predict(encoded))
    # the variance tracks the noise: true 4.0 and 0.0625 (plus the mean's own error)
    assert 2.5 < np.median(var[sd_new == 2.0]) < 6.0
    assert np.median(var[sd_new == 0.25]) < 0.4
    assert np.mean((y_new - mean) ** 2 / var) == pytest.approx(1.0, abs=0.35)
    loaded = load_member(fitted.save(tmp_path / "g"))
    assert isinstance(loaded, LightGBMGaussian) and loaded.outputs() == ("mean", "var")
    np.testing.assert_array_equal(loaded.predict(X_new), out)
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == [
        "mean.txt.gz", "member.json", "preprocessor.skops", "var.txt.gz",
    ]  # fmt: skip


def test_variance_is_fitted_on_out_of_fold_residuals():
    X, y, _ = heteroscedastic(600)
    member = small(inner_folds=3, random_state=5)
    fitted = member.fit(X, y, fold_context("regression", X, y))
    Z = fitted.preprocessor_.transform(X)
    residual = np.empty_like(y)
    for train, valid in KFold(3, shuffle=True, random_state=5).split(Z):
        model = lgb.LGBMRegressor(**member.estimator.get_params()).set_params(n_jobs=1)
        model.fit(Z[train], y[train], categorical_feature=[2])
        residual[valid] = y[valid] - model.predict(Z[valid])
    variance = lgb.LGBMRegressor(**member.variance_estimator.get_params())
    variance.set_params(objective="gamma", n_jobs=1).fit(Z, residual**2, categorical_feature=[2])
    np.testing.assert_allclose(fitted.predict(X)[:, 0, 1], variance.predict(Z), rtol=1e-10)


def test_refuses_classification_and_bad_inner_folds():
    X, y, _ = heteroscedastic(100)
    labels = (y > 0).astype(int)
    with pytest.raises(ValueError, match="predicts a Gaussian for regression, however"):
        small().fit(X, labels, fold_context("binary", X, labels))
    with pytest.raises(ValueError, match="inner_folds must be an int >= 2, however"):
        small(inner_folds=1)
    assert family_class("lightgbm_gaussian") is LightGBMGaussian


def test_ensemble_of_gaussian_members_fits_predicts_and_round_trips(tmp_path):
    X, y, _ = heteroscedastic(400)
    members = [small("g1"), small("g2", random_state=1)]
    members[1].estimator.set_params(num_leaves=15)
    run = tmp_path / "run"  # the second fit reuses the first one's folds
    model = EnsembleRegressor(members=members, cv=3, n_jobs=1, work_dir=run).fit(X, y)
    assert isinstance(model.combiner_, MixtureWeights)  # the default for Gaussian members
    assert model.oof_.outputs == ("mean", "var")
    X_new = X.iloc[:50]
    mean, var = model.predict_distribution(X_new)
    np.testing.assert_array_equal(model.predict(X_new), mean)
    folds = model.member_fold_predictions(X_new)
    assert len(folds) == 3 and folds[0].outputs == ("mean", "var")
    np.testing.assert_allclose(np.stack([mean, var], axis=1), model.combiner_.predict_folds(folds))
    loaded = Ensemble.load(model.save(tmp_path / "model"))
    for a, b in zip(loaded.predict_distribution(X_new), (mean, var)):
        np.testing.assert_array_equal(a, b)
    # a weight vector mixes the members' Gaussians: each fold's mixture, then their mean
    plain = EnsembleRegressor(members=members, combiner=Mean(), cv=3, n_jobs=1, work_dir=run)
    m, v = plain.fit(X, y).predict_distribution(X_new)
    values = np.stack([P.values for P in folds])  # (folds, n, members, 2)
    fold_mean = values[..., 0].mean(axis=2)
    fold_var = (values[..., 1] + values[..., 0] ** 2).mean(axis=2) - fold_mean**2
    np.testing.assert_allclose(m, fold_mean.mean(axis=0))
    np.testing.assert_allclose(v, fold_var.mean(axis=0))


def test_point_and_gaussian_members_are_not_mixed():
    X, y, _ = heteroscedastic(200)
    point = ("lgbm", lgb.LGBMRegressor(n_estimators=5, verbose=-1))
    with pytest.raises(
        ValueError, match=r"must all predict the same outputs.*g1: \('mean', 'var'\)"
    ):
        EnsembleRegressor(members=[small("g1"), point], cv=2, n_jobs=1).fit(X, y)
    model = EnsembleRegressor(members=[point], cv=2, n_jobs=1).fit(X, y)
    with pytest.raises(ValueError, match="predict_distribution needs members that predict"):
        model.predict_distribution(X)
