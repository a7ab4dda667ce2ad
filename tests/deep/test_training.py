import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer
from torch import nn
from torch.nn import functional as F

from ensemblex.deep import DeepEnsembleClassifier
from ensemblex.deep.training import (
    clone_state,
    encode_targets,
    mean_prediction_loss,
    member_loss,
    train,
    validation_split,
)


def _regression(n=50, d=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen)
    y = X @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(n, generator=gen)
    return X, y


def _linear(seed=0):
    torch.manual_seed(seed)
    return nn.Linear(3, 1)


def _mse(net, X, y):
    return lambda rows: ((net(X[rows])[:, 0] - y[rows]) ** 2).mean()


# ---------------------------------------------------------------- the loop itself
def test_train_is_minibatch_sgd_in_the_seeded_order():
    """Against plain SGD written out in float64 with the closed-form MSE gradient."""
    X, y = _regression()
    net = _linear()
    w, b = net.weight.detach().double()[0].numpy().copy(), float(net.bias.detach()[0])
    lr, batch, epochs, seed = 0.05, 16, 3, 5
    result = train(
        net,
        _mse(net, X, y),
        len(X),
        max_epochs=epochs,
        batch_size=batch,
        optimizer=torch.optim.SGD(net.parameters(), lr=lr),
        random_state=seed,
    )
    Xn, yn = X.double().numpy(), y.double().numpy()
    gen = torch.Generator().manual_seed(seed)
    history = []
    for _ in range(epochs):
        order = torch.randperm(len(X), generator=gen).numpy()
        losses = []
        for start in range(0, 48, batch):  # 3 full batches of 16; the last 2 rows dropped
            rows = order[start : start + batch]
            residual = Xn[rows] @ w + b - yn[rows]
            losses.append(np.mean(residual**2))
            w = w - lr * 2 * Xn[rows].T @ residual / batch
            b = b - lr * 2 * residual.mean()
        history.append(np.mean(losses))
    np.testing.assert_allclose(net.weight.detach()[0].numpy(), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(net.bias.detach()[0]), b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.history, history, rtol=1e-5)
    assert result.lrs == [lr] * epochs
    assert result.val_history == [] and result.best_epoch == epochs - 1
    assert not net.training  # left in eval mode


def test_each_member_draws_its_own_batch_order():
    seen = []
    weight = nn.Parameter(torch.zeros(()))

    def batch_loss(rows):
        seen.append(rows.clone())
        return weight**2

    train(
        nn.ParameterList([weight]),
        batch_loss,
        10,
        max_epochs=2,
        batch_size=4,
        n_members=3,
        random_state=2,
    )
    assert len(seen) == 4 and all(rows.shape == (3, 4) for rows in seen)
    gen = torch.Generator().manual_seed(2)
    for epoch in range(2):
        expected = torch.argsort(torch.rand(3, 10, generator=gen), dim=1)[:, :8]
        drawn = torch.cat(seen[2 * epoch : 2 * epoch + 2], dim=1)
        torch.testing.assert_close(drawn, expected)
        for member in drawn:  # no row twice within an epoch
            assert len(set(member.tolist())) == 8
    assert not torch.equal(seen[0][0], seen[0][1])


def test_hooks_see_every_step_and_the_lrs_follow_a_schedule():
    X, y = _regression(n=40)
    net = _linear()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.5)
    epochs_seen = []
    result = train(
        net,
        _mse(net, X, y),
        len(X),
        max_epochs=3,
        batch_size=16,  # 2 steps per epoch
        optimizer=optimizer,
        after_step=scheduler.step,
        after_epoch=epochs_seen.append,
    )
    assert epochs_seen == [0, 1, 2]
    np.testing.assert_allclose(result.lrs, [0.1, 0.1 * 0.5**2, 0.1 * 0.5**4])


# ---------------------------------------------------------------- early stopping
def test_early_stopping_puts_back_the_best_epochs_weights():
    X, y = _regression()
    net = _linear()
    scripted = iter([3.0, 2.0, 1.0, 1.5, 1.2, 1.0 - 1e-7, 4.0, 0.1])
    snapshots = []
    result = train(
        net,
        _mse(net, X, y),
        len(X),
        max_epochs=8,
        batch_size=10,
        lr=0.05,
        validation_loss=lambda: next(scripted),
        patience=3,
        after_epoch=lambda epoch: snapshots.append(clone_state(net)),
    )
    # epochs 3, 4, 5 are not better by more than 1e-6: stop after epoch 5
    assert result.val_history == [3.0, 2.0, 1.0, 1.5, 1.2, 1.0 - 1e-7]
    assert result.n_epochs == len(result.history) == len(result.lrs) == 6
    assert result.best_epoch == 2 and result.best_loss == 1.0
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, snapshots[2][key], rtol=0, atol=0)
    assert not torch.equal(net.weight, snapshots[-1]["weight"])


def test_early_stopping_on_a_real_validation_loss():
    X, y = _regression(n=120, seed=1)
    X_val, y_val = X[100:], y[100:]
    net = _linear(seed=3)
    result = train(
        net,
        _mse(net, X[:100], y[:100]),
        100,
        max_epochs=60,
        batch_size=8,
        lr=0.3,  # noisy enough that the validation loss goes up and down
        validation_loss=lambda: F.mse_loss(net(X_val)[:, 0], y_val),
        patience=4,
    )
    val = np.array(result.val_history)
    assert len(val) == result.n_epochs
    assert result.best_loss == val.min() and result.best_epoch == int(np.argmin(val))
    # the best stays ahead of everything after it by less than the tolerance, and the stop
    # came exactly `patience` epochs after it (or at max_epochs)
    assert np.all(val[result.best_epoch + 1 :] > result.best_loss - 1e-6)
    assert result.n_epochs in (result.best_epoch + 5, 60)
    with torch.no_grad():
        again = float(F.mse_loss(net(X_val)[:, 0], y_val))
    assert again == pytest.approx(result.best_loss, rel=1e-6)


# ---------------------------------------------------------------- seeds and the global RNG
def _dropout_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 1))


def _fit(seed, caller_seed=None):
    """Train a net with dropout; with ``caller_seed``, seed the global generator with it just
    before training and let the training continue that stream (``seed_global=False``)."""
    X, y = _regression()
    net = _dropout_net()
    if caller_seed is not None:
        torch.manual_seed(caller_seed)
    train(
        net,
        _mse(net, X, y),
        len(X),
        max_epochs=2,
        batch_size=10,
        random_state=seed,
        seed_global=caller_seed is None,
    )
    return net.state_dict()


def test_same_seed_same_parameters_other_seed_other_parameters():
    a, b, c = _fit(3), _fit(3), _fit(4)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert not torch.equal(a["0.weight"], c["0.weight"])


def test_the_global_generator_is_untouched_and_seed_global_false_continues_it():
    before = torch.get_rng_state()
    _fit(3)
    assert torch.equal(torch.get_rng_state(), before)
    # without seed_global, dropout continues the caller's stream: another stream, other weights
    one, two = _fit(3, caller_seed=1), _fit(3, caller_seed=2)
    assert not torch.equal(one["0.weight"], two["0.weight"])
    torch.testing.assert_close(_fit(3, caller_seed=1)["0.weight"], one["0.weight"])


def test_a_loss_nan_from_the_first_epoch_is_a_clear_error():
    X, y = _regression()
    net = _linear()
    before = torch.get_rng_state()
    with pytest.raises(ValueError, match=r"no epoch reached a finite validation loss"):
        train(
            net,
            _mse(net, X, y),
            len(X),
            max_epochs=3,
            batch_size=10,
            validation_loss=lambda: float("nan"),
            patience=2,
        )
    with pytest.raises(ValueError, match=r"training loss is not finite at epoch 0"):
        train(
            net,
            lambda rows: _mse(net, X, y)(rows) * float("nan"),
            len(X),
            max_epochs=3,
            batch_size=10,
        )
    assert torch.equal(torch.get_rng_state(), before)


def test_bad_arguments_are_named():
    net = _linear()
    X, y = _regression()
    for kwargs, text in (
        ({"max_epochs": 0, "batch_size": 4}, "max_epochs must be >= 1"),
        ({"max_epochs": 1, "batch_size": 0}, "batch_size must be >= 1"),
        (
            {"max_epochs": 1, "batch_size": 4, "validation_loss": float, "patience": 0},
            "patience must be >= 1",
        ),
    ):
        with pytest.raises(ValueError, match=text):
            train(net, _mse(net, X, y), len(X), **kwargs)


def test_max_seconds_stops_after_the_epoch_that_crosses_it():
    X, y = _regression()
    net = _linear()
    result = train(net, _mse(net, X, y), len(X), max_epochs=50, batch_size=10, max_seconds=0.0)
    assert result.n_epochs == 1


# ---------------------------------------------------------------- targets and split
def test_encode_targets():
    y = np.array(["b", "c", "a", "b", "c", "c"])
    t = encode_targets(y, classifier=True)
    assert t.classes.tolist() == ["a", "b", "c"]
    assert t.values.dtype == torch.int64
    np.testing.assert_array_equal(t.classes[t.values.numpy()], y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        encode_targets(["a", "a"], classifier=True)
    values = np.array([3.0, 5.0, 10.0, -2.0])
    r = encode_targets(values, classifier=False)
    assert r.classes is None and r.codes is None and r.values.dtype == torch.float32
    assert (r.mean, r.scale) == pytest.approx((values.mean(), values.std()))
    np.testing.assert_allclose(r.values.numpy() * r.scale + r.mean, values, rtol=1e-6)
    assert encode_targets([2.0, 2.0], classifier=False).scale == 1.0
    with pytest.raises(ValueError, match="NaN or inf"):
        encode_targets([1.0, np.nan], classifier=False)


def test_validation_split_is_stratified_and_disjoint():
    y = np.repeat(["a", "b", "c"], [60, 30, 10])
    t = encode_targets(y, classifier=True)
    train_idx, val_idx = validation_split(t, 0.2, random_state=0)
    assert len(np.intersect1d(train_idx, val_idx)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train_idx, val_idx])), np.arange(100))
    labels, counts = np.unique(y[val_idx], return_counts=True)
    assert labels.tolist() == ["a", "b", "c"] and counts.tolist() == [12, 6, 2]
    again, _ = validation_split(t, 0.2, random_state=0)
    np.testing.assert_array_equal(again, train_idx)
    other, _ = validation_split(t, 0.2, random_state=1)
    assert not np.array_equal(np.sort(other), np.sort(train_idx))
    r_train, r_val = validation_split(encode_targets(np.arange(50.0), classifier=False), 0.1, 0)
    assert (len(r_train), len(r_val)) == (45, 5)
    with pytest.raises(ValueError, match="validation_fraction=1.5"):
        validation_split(t, 1.5, random_state=0)


# ---------------------------------------------------------------- losses of K members
def test_member_losses_against_one_member_at_a_time():
    gen = torch.Generator().manual_seed(0)
    out = torch.randn(4, 7, 3, generator=gen)  # (K, B, classes)
    y = torch.randint(0, 3, (7,), generator=gen)
    one_by_one = torch.stack([F.cross_entropy(out[j], y) for j in range(4)]).mean()
    torch.testing.assert_close(member_loss(out, y, classifier=True), one_by_one)
    heads_second = out.transpose(0, 1).contiguous()  # (B, K, classes), TabM's layout
    torch.testing.assert_close(
        member_loss(heads_second, y, classifier=True, member_axis=1), one_by_one
    )
    own = torch.randint(0, 3, (4, 7), generator=gen)  # each member its own batch
    expected = torch.stack([F.cross_entropy(out[j], own[j]) for j in range(4)]).mean()
    torch.testing.assert_close(member_loss(out, own, classifier=True), expected)
    values = torch.randn(7, generator=gen)
    expected = torch.stack([F.mse_loss(out[j, :, 0], values) for j in range(4)]).mean()
    torch.testing.assert_close(member_loss(out[..., :1], values, classifier=False), expected)

    p = torch.softmax(out.double(), dim=-1).mean(dim=0).numpy()
    nll = -np.log(p[np.arange(7), y.numpy()]).mean()
    assert mean_prediction_loss(out, y, classifier=True) == pytest.approx(nll, rel=1e-5)
    second = mean_prediction_loss(heads_second, y, classifier=True, member_axis=1)
    assert second == pytest.approx(nll, rel=1e-5)
    mse = np.mean((out[..., 0].double().mean(dim=0).numpy() - values.numpy()) ** 2)
    assert mean_prediction_loss(out, values, classifier=False) == pytest.approx(mse, rel=1e-5)


# ---------------------------------------------------------------- an estimator on top
def test_deep_ensemble_holds_the_weights_of_its_best_validation_epoch():
    X, y = load_breast_cancer(return_X_y=True)
    model = DeepEnsembleClassifier(
        n_members=3, hidden=(16,), max_epochs=30, patience=3, batch_size=32, lr=1e-2
    ).fit(X, y)
    history = np.array(model.history_)
    assert model.best_validation_loss_ == history.min()
    rows = model.validation_rows_
    proba = model.predict_proba(X[rows])  # the members' mean probabilities, float64
    log_loss = -np.log(proba[np.arange(len(rows)), y[rows]]).mean()
    assert log_loss == pytest.approx(model.best_validation_loss_, rel=1e-4)
    if len(history) < 30:  # stopped early: the last epochs were worse
        assert history[-1] > model.best_validation_loss_
