"""Neural boosting (GrowNet-style): stages fitted on the loss gradient of the ensemble so far."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import log_loss

from ensemblex.deep import (
    DeepEnsembleRegressor,
    NeuralBoostingClassifier,
    NeuralBoostingRegressor,
)
from ensemblex.deep.boosting import newton_loss, newton_targets
from ensemblex.members import FoldContext, load_member, member
from ensemblex.members.torch import TorchMember
from ensemblex.preprocessing import infer_schema

FAST = {"hidden": (16,), "lr": 1e-2, "batch_size": 64, "n_threads": 1}


def smooth_problem(n=500, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    return X, np.sin(2 * X[:, 0]) + X[:, 1] ** 2 - X[:, 2] * X[:, 3]


def standardised_mse(model, X, y, rows):
    """Each stage prefix's MSE on ``rows``, in the model's standardised units."""
    return [
        float(np.mean(((p[rows] - y[rows]) / model.y_scale_) ** 2)) for p in model.staged_predict(X)
    ]


def test_one_stage_with_learning_rate_one_is_a_one_member_deep_ensemble():
    # F_1 = 0 + 1 * f_1 with f_1 fitted to the (standardised) target: the same network,
    # batches, optimiser and early stopping as a deep ensemble of one MLP
    X, y = smooth_problem()
    settings = {"hidden": (16,), "lr": 1e-2, "batch_size": 64, "patience": 3, "random_state": 4}
    stage = {"n_stages": 1, "learning_rate": 1.0, "epochs_per_stage": 12, **settings}
    boosted = NeuralBoostingRegressor(line_search=False, **stage).fit(X, y)
    single = DeepEnsembleRegressor(n_members=1, max_epochs=12, **settings).fit(X, y)
    assert boosted.n_stages_ == 1
    np.testing.assert_allclose(boosted.predict(X), single.predict(X), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(boosted.validation_rows_, single.validation_rows_)
    # the line search rescales that network by the least-squares slope on the training rows
    searched = NeuralBoostingRegressor(**stage).fit(X, y)
    rows = np.setdiff1d(np.arange(len(X)), single.validation_rows_)
    f, r = single.predict(X) - y.mean(), y - y.mean()
    slope = np.linalg.lstsq(f[rows, None], r[rows], rcond=None)[0][0]
    np.testing.assert_allclose(searched.predict(X), y.mean() + slope * f, rtol=1e-4, atol=1e-4)
    assert abs(slope - 1) > 1e-4


def test_training_loss_falls_stage_by_stage_on_a_noiseless_problem():
    X, y = smooth_problem()
    model = NeuralBoostingRegressor(
        n_stages=6, epochs_per_stage=15, learning_rate=0.5, n_iter_no_change=6, **FAST
    ).fit(X, y)
    assert model.n_stages_ == 6
    losses = np.array(model.train_loss_)
    assert np.all(np.diff(losses) < 0), losses
    assert losses[-1] < 0.3 * losses[0]
    # the recorded losses are those of the staged predictions (recomputed here)
    train_rows = np.setdiff1d(np.arange(len(X)), model.validation_rows_)
    np.testing.assert_allclose(losses[1:], standardised_mse(model, X, y, train_rows), rtol=1e-4)
    np.testing.assert_allclose(list(model.staged_predict(X))[-1], model.predict(X), atol=1e-5)
    assert model.predict_members(X).shape == (len(X), 1, 1) and model.ensemble_size == 1


def test_boosting_stops_once_the_validation_loss_stops_improving():
    # the target is pure noise: after at most a lucky stage or two, no stage can improve
    # the held-out loss, so boosting must stop long before 30 stages
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(400, 3)), rng.normal(size=400)
    model = NeuralBoostingRegressor(
        n_stages=30, epochs_per_stage=5, learning_rate=1.0, n_iter_no_change=2, **FAST
    ).fit(X, y)
    val = np.array(model.validation_loss_)
    best = model.n_stages_
    assert len(val) == best + 1 + 2 < 31  # stopped two stages after the best one
    assert val[best] == val.min() and np.all(val[best + 1 :] >= val[best] - 1e-6)
    assert model.best_validation_loss_ == val[best]
    rows = model.validation_rows_
    np.testing.assert_allclose(val[1 : best + 1], standardised_mse(model, X, y, rows), rtol=1e-4)
    assert len(list(model.staged_predict(X))) == best == len(model.model_.stages)


def test_newton_targets_give_the_exact_newton_step_on_the_binary_logit():
    logits = torch.tensor([[0.3, -0.2], [1.5, 0.4], [-1.0, 2.0]], dtype=torch.float64)
    y = torch.tensor([1, 0, 0])
    g, h = newton_targets(logits, y)
    # newton_loss is a separable quadratic in the outputs: its gradient vanishes at -g / h
    f = (-g / h).requires_grad_(True)
    (grad,) = torch.autograd.grad(newton_loss(f, g, h), f)
    torch.testing.assert_close(grad, torch.zeros_like(grad), rtol=0, atol=1e-12)
    step = (f[:, 1] - f[:, 0]).detach()
    p1 = torch.softmax(logits, dim=1)[:, 1]
    exact = -(p1 - y.double()) / (p1 * (1 - p1))  # Newton on z = logit1 - logit0
    torch.testing.assert_close(step, exact, rtol=1e-6, atol=1e-8)


def test_binary_probabilities_are_valid_and_beat_the_prior_on_a_separable_problem():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(500, 2))
    y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    model = NeuralBoostingClassifier(n_stages=4, epochs_per_stage=10, **FAST).fit(X, y)
    proba = model.predict_proba(X)
    assert proba.shape == (500, 2) and np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    assert model.classes_.tolist() == ["no", "yes"]
    prior = np.full_like(proba, 0.0) + np.mean(y[:, None] == model.classes_, axis=0)
    assert log_loss(y, proba) < 0.3 * log_loss(y, prior)
    assert np.mean(model.predict(X) == y) > 0.95
    # each stage lowers the training log-loss (Newton steps with shrinkage on an easy problem)
    train_rows = np.setdiff1d(np.arange(len(X)), model.validation_rows_)
    staged = [log_loss(y[train_rows], p[train_rows]) for p in model.staged_predict_proba(X)]
    np.testing.assert_allclose(staged, model.train_loss_[1 : model.n_stages_ + 1], rtol=1e-4)
    assert np.all(np.diff(model.train_loss_) < 0)


def test_multiclass_boosting_learns_three_classes():
    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 3.0], [3.0, -2.0], [-3.0, -2.0]])
    y = rng.integers(0, 3, size=450)
    X = centres[y] + rng.normal(size=(450, 2))
    model = NeuralBoostingClassifier(n_stages=4, epochs_per_stage=10, **FAST).fit(X, y)
    proba = model.predict_proba(X)
    assert proba.shape == (450, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    assert np.mean(model.predict(X) == y) > 0.95
    # F_0 is the log prior of the training rows: the log-loss before any stage is the prior's
    train_rows = np.setdiff1d(np.arange(len(X)), model.validation_rows_)
    prior = np.bincount(y[train_rows], minlength=3) / len(train_rows)
    assert model.train_loss_[0] == pytest.approx(
        log_loss(y[train_rows], np.tile(prior, (len(train_rows), 1))), rel=1e-5
    )
    assert model.train_loss_[-1] < 0.3 * model.train_loss_[0]


def test_same_random_state_same_model_and_another_differs():
    X, y = smooth_problem(300)
    settings = {"n_stages": 3, "epochs_per_stage": 4, "pass_features": True, **FAST}
    a = NeuralBoostingRegressor(random_state=5, **settings).fit(X, y).predict(X)
    b = NeuralBoostingRegressor(random_state=5, **settings).fit(X, y).predict(X)
    c = NeuralBoostingRegressor(random_state=6, **settings).fit(X, y).predict(X)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


@pytest.mark.parametrize("variant", [{"pass_features": True}, {"corrective_epochs": 2}])
def test_grownet_options_train_and_round_trip(tmp_path, variant):
    X, y = smooth_problem(300)
    model = NeuralBoostingRegressor(
        n_stages=5, epochs_per_stage=5, n_iter_no_change=1, **variant, **FAST
    ).fit(X, y)
    assert model.train_loss_[model.n_stages_] < 0.5 * model.train_loss_[0]
    train_rows = np.setdiff1d(np.arange(len(X)), model.validation_rows_)
    # the corrective step moves earlier stages: only the last prefix is as it was recorded
    first = model.n_stages_ if variant.get("corrective_epochs") else 1
    np.testing.assert_allclose(
        model.train_loss_[first : model.n_stages_ + 1],
        standardised_mse(model, X, y, train_rows)[first - 1 :],
        rtol=1e-4,
    )
    rows = model.validation_rows_  # the kept prefix is the one whose validation loss was best
    final = standardised_mse(model, X, y, rows)[-1]
    assert final == pytest.approx(model.best_validation_loss_, rel=1e-4)
    assert model.best_validation_loss_ == min(model.validation_loss_)
    loaded = NeuralBoostingRegressor.load(model.save(tmp_path / "boost.safetensors"))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.get_params() == model.get_params()


def test_classifier_saves_and_loads_with_equal_probabilities(tmp_path):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 3))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 1)
    model = NeuralBoostingClassifier(n_stages=3, epochs_per_stage=4, **FAST).fit(X, y)
    path = model.save(tmp_path / "boost.safetensors")
    loaded = NeuralBoostingClassifier.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.classes_, model.classes_)
    with pytest.raises(ValueError, match="NeuralBoostingClassifier"):
        NeuralBoostingRegressor.load(path)


def test_boosting_as_a_torch_member_fits_predicts_saves_and_loads(tmp_path):
    rng = np.random.default_rng(5)
    X = pd.DataFrame(
        {"a": rng.normal(size=240), "b": rng.normal(size=240), "c": rng.choice(["u", "v"], 240)}
    )
    y = X["a"].to_numpy() * 2 + (X["c"] == "u") + 0.1 * rng.normal(size=240)
    template = member("boost", NeuralBoostingRegressor(n_stages=3, epochs_per_stage=5, **FAST))
    assert isinstance(template, TorchMember) and template.column_names() == ["boost"]
    fitted = template.fit(X, y, FoldContext("regression", infer_schema(X), 0))
    pred = fitted.predict(X)
    assert pred.shape == (240, 1, 1)
    np.testing.assert_allclose(pred[:, 0, 0], fitted.model_.predict(fitted.encode(X)))
    assert np.corrcoef(pred[:, 0, 0], y)[0, 1] > 0.9
    loaded = load_member(fitted.save(tmp_path / "boost"))
    np.testing.assert_array_equal(loaded.predict(X), pred)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n_stages": 0}, "n_stages must be an int >= 1, however: n_stages=0"),
        ({"epochs_per_stage": 2.5}, "epochs_per_stage must be an int >= 1"),
        ({"hidden": ()}, "hidden must be a non-empty tuple of positive ints"),
        ({"learning_rate": 0.0}, "learning_rate must be a number > 0, however: learning_rate=0.0"),
        ({"corrective_epochs": -1}, "corrective_epochs must be an int >= 0"),
        ({"validation_fraction": 1.5}, "validation_fraction must be in"),
    ],
)
def test_bad_parameters_are_named(params, message):
    X, y = smooth_problem(50)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        NeuralBoostingRegressor(**params).fit(X, y)


def test_bad_inputs_are_named():
    X, y = smooth_problem(100)
    with pytest.raises(RuntimeError, match="not fitted"):
        NeuralBoostingRegressor().predict(X)
    with pytest.raises(ValueError, match="at least 2 classes"):
        NeuralBoostingClassifier().fit(X, np.zeros(100))
    model = NeuralBoostingRegressor(n_stages=1, epochs_per_stage=1, **FAST).fit(X, y)
    with pytest.raises(ValueError, match=r"X must have shape \(n_samples, 4\)"):
        model.predict(X[:, :3])
