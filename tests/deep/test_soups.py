import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn

from ensemblex.deep.soups import (
    greedy_soup,
    interpolate,
    make_score_fn,
    uniform_soup,
    wise_ft,
)


def _net(seed=0, batchnorm=False):
    torch.manual_seed(seed)
    norm = nn.BatchNorm1d(32) if batchnorm else nn.Identity()
    return nn.Sequential(nn.Linear(64, 32), norm, nn.ReLU(), nn.Linear(32, 10))


def _train(net, X, y, *, epochs, lr, weight_decay=0.0, seed=0):
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    X, y = torch.from_numpy(X), torch.from_numpy(y)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(X), generator=generator)
        for start in range(0, len(X), 64):
            idx = order[start : start + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(net(X[idx]), y[idx]).backward()
            opt.step()
    net.eval()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


@pytest.fixture(scope="module")
def finetunes():
    """A shared start on part of the digits, then fine-tunes with other lr, seeds, epochs."""
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    X_tr, X_val, y_tr, y_val = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    net = _net(batchnorm=True)
    start = _train(net, X_tr[:300], y_tr[:300], epochs=2, lr=0.05)
    states = []
    for i, (lr, epochs, wd) in enumerate(
        [(0.05, 3, 0.0), (0.02, 4, 1e-3), (0.1, 2, 0.0), (0.03, 3, 1e-4)]
    ):
        net.load_state_dict(start)
        states.append(_train(net, X_tr, y_tr, epochs=epochs, lr=lr, weight_decay=wd, seed=i))
    return net, start, states, X_val, y_val


def test_uniform_soup_is_the_mean_of_the_weights_and_copies_integer_buffers():
    nets = [_net(seed, batchnorm=True) for seed in range(3)]
    for i, net in enumerate(nets):
        net.train()
        for _ in range(i + 1):
            net(torch.randn(8, 64))  # num_batches_tracked = 1, 2, 3
    states = [net.state_dict() for net in nets]
    soup = uniform_soup(states)
    assert set(soup) == set(states[0])
    for key in ["0.weight", "0.bias", "1.running_mean", "3.weight"]:
        expected = (states[0][key] + states[1][key] + states[2][key]) / 3
        torch.testing.assert_close(soup[key], expected)
        assert soup[key].dtype == torch.float32
    assert soup["1.num_batches_tracked"].dtype == torch.int64
    assert int(soup["1.num_batches_tracked"]) == 1  # from the first state dict, not 2.0
    # a soup of one is that state dict
    torch.testing.assert_close(uniform_soup(states[:1])["0.weight"], states[0]["0.weight"])


def test_soups_reject_state_dicts_that_do_not_match():
    a = _net().state_dict()
    b = nn.Sequential(nn.Linear(64, 16), nn.Identity(), nn.ReLU(), nn.Linear(16, 10)).state_dict()
    with pytest.raises(ValueError, match=r"state_dicts\[1\]\['0.weight'\] must match"):
        uniform_soup([a, b])
    c = _net(batchnorm=True).state_dict()
    with pytest.raises(ValueError, match="other keys"):
        uniform_soup([a, c])
    with pytest.raises(ValueError, match="at least one"):
        uniform_soup([])
    with pytest.raises(ValueError, match="does not fit the module"):
        greedy_soup(_net(batchnorm=True), [a], lambda m: 0.0)


def test_greedy_soup_is_never_worse_than_its_best_ingredient_on_held_out_data(finetunes):
    net, start, states, X_val, y_val = finetunes
    score_fn = make_score_fn(X_val, y_val, task="multiclass", metric="neg_log_loss")
    # a harmful ingredient: the shared start perturbed far out of the basin
    bad = {
        k: v + 3.0 * torch.randn_like(v) if k.startswith(("0.", "3.")) else v
        for k, v in start.items()
    }
    result = greedy_soup(net, [*states, bad], score_fn)
    assert len(result.ingredient_scores) == 5
    assert result.ingredients[0] == int(np.argmax(result.ingredient_scores))
    assert result.score >= max(result.ingredient_scores)
    assert 4 not in result.ingredients
    # the module holds the soup, and the soup is the mean of the kept ingredients
    assert result.score == pytest.approx(score_fn(net))
    expected = uniform_soup([([*states, bad])[i] for i in result.ingredients])
    torch.testing.assert_close(net.state_dict()["0.weight"], expected["0.weight"])
    # candidates are tried best first
    tried = [i for i, _, _ in result.trace]
    assert [result.ingredient_scores[i] for i in tried] == sorted(result.ingredient_scores)[::-1]
    kept = [i for i, _, keep in result.trace if keep]
    assert kept == result.ingredients


def test_wise_ft_ends_are_base_and_fine_tuned_and_alpha_is_the_best_on_validation(finetunes):
    net, start, states, X_val, y_val = finetunes
    tuned = states[0]
    for key in start:
        assert torch.equal(interpolate(start, tuned, 0.0)[key], start[key])
        assert torch.equal(interpolate(start, tuned, 1.0)[key], tuned[key])
    half = interpolate(start, tuned, 0.5)
    torch.testing.assert_close(half["0.weight"], (start["0.weight"] + tuned["0.weight"]) / 2)
    assert half["1.num_batches_tracked"].dtype == torch.int64
    score_fn = make_score_fn(X_val, y_val, task="multiclass")
    result = wise_ft(net, start, tuned, score_fn, alphas=[0.0, 0.25, 0.5, 0.75, 1.0])
    assert list(result.scores) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert result.score == max(result.scores.values()) == result.scores[result.alpha]
    assert result.score == pytest.approx(score_fn(net))
    net.load_state_dict(start)
    assert result.scores[0.0] == pytest.approx(score_fn(net))
    net.load_state_dict(tuned)
    assert result.scores[1.0] == pytest.approx(score_fn(net))
    # fine-tuning helped: the tuned end beats the briefly trained start
    assert result.scores[1.0] > result.scores[0.0]
    with pytest.raises(ValueError, match="alphas must be"):
        wise_ft(net, start, tuned, score_fn, alphas=[1.5])


def test_make_score_fn_checks_the_metric():
    X, y = np.zeros((4, 64), np.float32), np.array([0, 1, 2, 3])
    with pytest.raises(ValueError, match="metric must be one of"):
        make_score_fn(X, y, task="multiclass", metric="neg_mse")
    net = _net()
    accuracy = make_score_fn(X, y, task="multiclass")(net)
    assert accuracy in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert make_score_fn(X, y, task="multiclass", metric="neg_log_loss")(net) < 0
