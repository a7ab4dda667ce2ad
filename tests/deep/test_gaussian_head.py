"""DeepEnsembleRegressor(distribution="gaussian"): the NLL head, learned noise, save/load."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from ensemblex.deep import DeepEnsembleRegressor
from ensemblex.deep.gaussian import (
    gaussian_head,
    gaussian_member_nll,
    gaussian_mixture_nll,
    gaussian_moments,
)
from ensemblex.members import member
from ensemblex.members.base import FoldContext, load_member
from ensemblex.preprocessing import infer_schema


def heteroscedastic(n=1500, seed=0):
    """Noise sd 0.1 where x0 < 0, 1.0 where x0 > 0; the mean is sin(x1)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 2))
    sd = np.where(X[:, 0] > 0, 1.0, 0.1)
    return X, np.sin(X[:, 1]) + sd * rng.normal(size=n), sd


def small(**changes):
    params = dict(
        n_members=3, hidden=(32, 32), lr=3e-3, max_epochs=25, patience=25,
        distribution="gaussian", random_state=0,
    )  # fmt: skip
    return DeepEnsembleRegressor(**{**params, **changes})


def test_losses_equal_references():
    rng = np.random.default_rng(0)
    out = torch.as_tensor(rng.normal(size=(3, 20, 2)), dtype=torch.float64)
    y = torch.as_tensor(rng.normal(size=20), dtype=torch.float64)
    mean, var = gaussian_head(out, 1e-3)
    np.testing.assert_allclose(var, np.log1p(np.exp(out[..., 1].numpy())) + 1e-3)
    reference = torch.nn.GaussianNLLLoss(full=True, eps=0)(mean, y.expand(3, 20), var)
    assert float(gaussian_member_nll(out, y, 1e-3)) == pytest.approx(float(reference), rel=1e-12)
    density = stats.norm.pdf(y.numpy()[None, :], mean.numpy(), np.sqrt(var.numpy())).mean(axis=0)
    assert gaussian_mixture_nll(out, y, 1e-3) == pytest.approx(-np.log(density).mean(), rel=1e-9)
    moments = gaussian_moments(out, 1e-3, y_mean=10.0, y_scale=2.0)
    np.testing.assert_allclose(moments[:, :, 0], mean.numpy().T * 2 + 10)
    np.testing.assert_allclose(moments[:, :, 1], var.numpy().T * 4)


def test_nll_decreases_and_variance_tracks_the_noise(tmp_path):
    X, y, _ = heteroscedastic()
    model = small().fit(X, y)
    assert model.history_[-1] < model.history_[0] - 0.3  # the mixture's validation NLL
    X_new, _, sd_new = heteroscedastic(1000, seed=1)
    values = model.predict_members(X_new)
    assert values.shape == (1000, 3, 2) and np.all(values[:, :, 1] > 0)
    var = np.median(values[:, :, 1], axis=1)
    noisy, quiet = np.median(var[sd_new == 1.0]), np.median(var[sd_new == 0.1])
    assert 0.5 < noisy < 2.0  # true 1.0
    assert quiet < 0.1 and noisy / quiet > 10  # true 0.01
    mean, mixture_var = model.predict_distribution(X_new)
    np.testing.assert_allclose(mean, model.predict(X_new))
    np.testing.assert_allclose(mean, values[:, :, 0].mean(axis=1))
    assert np.all(mixture_var >= values[:, :, 1].mean(axis=1) - 1e-9)
    P = model.member_predictions(X_new[:5])
    assert P.outputs == ("mean", "var") and P.members == ("mlp0", "mlp1", "mlp2")
    path = model.save(tmp_path / "g.safetensors")
    loaded = DeepEnsembleRegressor.load(path)
    assert loaded.distribution == "gaussian" and loaded.min_variance == model.min_variance
    np.testing.assert_array_equal(loaded.predict_members(X_new), values)


def test_same_seed_same_numbers_and_point_head_unchanged():
    X, y, _ = heteroscedastic(300)
    first = small(max_epochs=3).fit(X, y).predict_members(X)
    np.testing.assert_array_equal(small(max_epochs=3).fit(X, y).predict_members(X), first)
    point = DeepEnsembleRegressor(n_members=2, hidden=(8,), max_epochs=2).fit(X, y)
    assert point.predict_members(X).shape == (300, 2, 1) and point.member_outputs is None
    with pytest.raises(ValueError, match="predict_distribution needs distribution='gaussian'"):
        point.predict_distribution(X)


def test_bad_distribution_is_named():
    X, y, _ = heteroscedastic(100)
    with pytest.raises(ValueError, match="distribution must be None or 'gaussian', however"):
        DeepEnsembleRegressor(distribution="laplace", max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="min_variance must be a number in"):
        DeepEnsembleRegressor(distribution="gaussian", min_variance=0, max_epochs=1).fit(X, y)


def test_torch_member_reports_and_round_trips_gaussian_outputs(tmp_path):
    X, y, _ = heteroscedastic(300)
    frame = pd.DataFrame(X, columns=["a", "b"])
    template = member("deep", small(max_epochs=3))
    assert template.family == "torch" and template.outputs() == ("mean", "var")
    fitted = template.fit(frame, y, FoldContext("regression", infer_schema(frame)))
    assert fitted.outputs() == ("mean", "var") and fitted.column_names() == [
        "deep.0", "deep.1", "deep.2",
    ]  # fmt: skip
    loaded = load_member(fitted.save(tmp_path / "m"))
    assert loaded.outputs() == ("mean", "var")
    np.testing.assert_array_equal(loaded.predict(frame), fitted.predict(frame))
