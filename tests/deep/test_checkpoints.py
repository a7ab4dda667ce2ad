import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn

from ensemblex.deep.checkpoints import stacked_predictions, train_snapshots


def _net(d_in=64, d_out=10, seed=0, batchnorm=False):
    torch.manual_seed(seed)
    norm = nn.BatchNorm1d(32) if batchnorm else nn.Identity()
    return nn.Sequential(
        nn.Linear(d_in, 32), norm, nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, d_out)
    )


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_tr)
    return (
        scaler.transform(X_tr).astype(np.float32),
        scaler.transform(X_te).astype(np.float32),
        y_tr,
        y_te,
    )


@pytest.fixture(scope="module")
def run(digits):
    X_tr, _, y_tr, _ = digits
    net = _net(batchnorm=True)
    result = train_snapshots(
        net,
        X_tr,
        y_tr,
        task="multiclass",
        n_cycles=3,
        epochs_per_cycle=3,
        lr=0.05,
        batch_size=64,
        ema_decay=0.95,
        random_state=0,
    )
    return net, result


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_stacked_predictions_equal_running_each_state_dict(task):
    d_out = 3 if task == "multiclass" else 1
    states = []
    for seed in range(4):
        net = _net(d_in=5, d_out=d_out, seed=seed, batchnorm=True)
        net.train()
        net(torch.randn(16, 5))  # move the BatchNorm statistics away from their defaults
        states.append({k: v.clone() for k, v in net.state_dict().items()})
    X = np.random.default_rng(0).normal(size=(23, 5)).astype(np.float32)
    values = stacked_predictions(net, states, X, task=task, batch_size=10)  # 3 row batches
    assert values.shape == (23, 4, d_out)
    for j, sd in enumerate(states):
        net.load_state_dict(sd)
        net.eval()
        with torch.no_grad():
            out = net(torch.from_numpy(X))
        ref = torch.softmax(out, dim=-1) if task == "multiclass" else out
        np.testing.assert_allclose(values[:, j], ref.numpy(), rtol=1e-5, atol=1e-6)
    if task == "multiclass":
        np.testing.assert_allclose(values.sum(axis=2), 1.0, atol=1e-9)


def test_stacked_predictions_reject_mismatched_state_dicts():
    a, b = _net(d_in=5).state_dict(), _net(d_in=6).state_dict()
    with pytest.raises(ValueError, match=r"state_dicts\[1\]\['0.weight'\] must match"):
        stacked_predictions(_net(d_in=5), [a, b], np.zeros((2, 5)), task="multiclass")
    with pytest.raises(ValueError, match="does not fit the module"):
        stacked_predictions(_net(d_in=5, batchnorm=True), [a], np.zeros((2, 5)), task="binary")
    with pytest.raises(ValueError, match="at least one"):
        stacked_predictions(_net(d_in=5), [], np.zeros((2, 5)), task="multiclass")


def test_snapshot_run_restarts_the_learning_rate_and_keeps_one_member_per_cycle(run):
    _, result = run
    assert len(result.snapshots) == 3 and len(result.history) == 9
    # each cycle starts at the peak learning rate and decays within the cycle
    assert result.lrs[0] == result.lrs[3] == result.lrs[6] == pytest.approx(0.05)
    assert result.lrs[1] < result.lrs[0] and result.lrs[2] < result.lrs[1]
    assert result.history[-1] < result.history[0]
    last, online, ema = result.snapshots[-1], result.online_state, result.ema_state
    for key in online:
        torch.testing.assert_close(last[key], online[key])
    w = "0.weight"
    assert not torch.equal(result.snapshots[0][w], result.snapshots[1][w])
    assert not torch.equal(ema[w], online[w])
    # a count is not averaged into the EMA: it is the online model's
    assert ema["1.num_batches_tracked"].dtype == torch.int64
    assert int(ema["1.num_batches_tracked"]) == int(online["1.num_batches_tracked"])


def test_snapshot_members_as_predictions_and_their_ensemble(run, digits):
    net, result = run
    _, X_te, _, y_te = digits
    P = result.predictions(net, X_te)
    assert P.members == ("snapshot0", "snapshot1", "snapshot2", "online", "ema")
    assert P.shape == (len(y_te), 5, 10) and P.task == "multiclass"
    snaps = P.select(["snapshot0", "snapshot1", "snapshot2"]).values
    accuracy = (snaps.mean(axis=1).argmax(axis=1) == y_te).mean()
    assert accuracy > 0.9
    # the ensemble's log-loss is at most its members' mean (convexity), and strictly below
    # when the snapshots disagree
    rows = np.arange(len(y_te))
    member_nll = -np.log(snaps[rows, :, y_te]).mean()
    ensemble_nll = -np.log(snaps.mean(axis=1)[rows, y_te]).mean()
    assert ensemble_nll < member_nll
    with pytest.raises(ValueError, match="members must be among"):
        result.predictions(net, X_te, members=["snapshot9"])


def test_train_snapshots_is_reproducible_and_leaves_the_global_rng(digits):
    X_tr, _, y_tr, _ = digits
    nets = [_net(seed=1) for _ in range(3)]
    before = torch.get_rng_state()
    kwargs = dict(task="multiclass", n_cycles=1, epochs_per_cycle=1, batch_size=64)
    X, y = X_tr[:300], y_tr[:300]
    a, b, c = (
        train_snapshots(net, X, y, random_state=seed, **kwargs)
        for net, seed in zip(nets, [3, 3, 4])
    )
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(a.online_state["0.weight"], b.online_state["0.weight"])
    assert not torch.equal(a.online_state["0.weight"], c.online_state["0.weight"])


def test_train_snapshots_checks_its_arguments(digits):
    X_tr, _, y_tr, _ = digits
    with pytest.raises(ValueError, match="n_cycles=0"):
        train_snapshots(_net(), X_tr, y_tr, task="multiclass", n_cycles=0)
    with pytest.raises(ValueError, match="ema_decay=1.5"):
        train_snapshots(_net(), X_tr, y_tr, task="multiclass", ema_decay=1.5)
    with pytest.raises(ValueError, match="y must have"):
        train_snapshots(_net(), X_tr, y_tr[:10], task="multiclass")
