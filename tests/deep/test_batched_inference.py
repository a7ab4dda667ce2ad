"""BatchedMLP's tiled inference path against its training path and against plain MLPs."""

import pytest
import torch
from torch import nn

from ensemblex.deep import BatchedMLP


def _plain(model: BatchedMLP, j: int) -> nn.Sequential:
    """Member ``j`` of ``model`` as an ``nn.Sequential`` of ``nn.Linear`` and ``nn.ReLU``."""
    modules: list[nn.Module] = []
    for i, layer in enumerate(model.layers):
        _, d_in, d_out = layer.weight.shape
        linear = nn.Linear(d_in, d_out)
        with torch.no_grad():
            linear.weight.copy_(layer.weight[j].T)
            linear.bias.copy_(layer.bias[j, 0])
        modules.append(linear)
        if i < len(model.layers) - 1:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)


def _training_path(model: BatchedMLP, x: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():
        return model(x).detach()


@pytest.mark.parametrize(
    "k, b, rows, tile, few",
    [
        (7, 1, 256, 2**18, 0),
        (7, 13, 5, 40, 0),
        (5, 9, 2, 8, 0),
        (1, 3, 2, 1, 0),
        (6, 3, 256, 2**18, 8),  # a few rows: the layout as stored
        (3, 40, 16, 64, 0),  # wide members: one at a time over all rows
    ],
)
@pytest.mark.parametrize("shared", [True, False])
def test_tiled_inference_equals_training_path_and_plain_members(
    k, b, rows, tile, few, shared, monkeypatch
):
    # small tile budgets force several member and row tiles that do not divide K and B
    monkeypatch.setattr(BatchedMLP, "TILE_ELEMENTS", tile)
    monkeypatch.setattr(BatchedMLP, "TILE_ROWS", rows)
    monkeypatch.setattr(BatchedMLP, "FEW_ROWS", few)
    model = BatchedMLP(k=k, d_in=5, d_out=3, hidden=(8, 4), seed=2).eval()
    x = torch.randn(b, 5) if shared else torch.randn(k, b, 5)
    expected = _training_path(model, x)
    with torch.inference_mode():
        got = model.infer(x)
        torch.testing.assert_close(model(x), got)  # forward dispatches here without autograd
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        for j in range(k):
            member = _plain(model, j)(x if shared else x[j])
            torch.testing.assert_close(got[j], member, rtol=1e-5, atol=1e-5)
        proba = model.infer(x, reduce="softmax_mean")
        torch.testing.assert_close(proba, torch.softmax(expected, -1).mean(0), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model.infer(x, reduce="mean"), expected.mean(0))
    assert got.shape == (k, b, 3) and proba.shape == (b, 3)


def test_tiles_follow_the_budget():
    model = BatchedMLP(k=1000, d_in=64, d_out=10, hidden=(32, 32))
    assert model._tiles(1000, 1) == (1000, 1, False)
    members, rows, wide_path = model._tiles(1000, 4096)
    assert rows == BatchedMLP.TILE_ROWS and members * rows * 32 <= BatchedMLP.TILE_ELEMENTS
    assert not wide_path
    wide = BatchedMLP(k=32, d_in=64, d_out=10, hidden=(512, 512, 512))
    assert wide._tiles(32, 4096) == (1, 4096, True)  # wide members: one at a time, all rows
    assert wide._tiles(32, 1) == (32, 1, False)  # one row: every member in one tile


def test_inference_sees_parameter_updates_and_training_keeps_autograd():
    model = BatchedMLP(k=3, d_in=4, d_out=2, hidden=(6,), seed=0)
    x = torch.randn(5, 4)
    with torch.no_grad():
        before = model(x)  # fills the cache of the first layer's stacked weights
        model.layers[0].weight.add_(0.5)  # an in-place update, as an optimiser step makes
        after = model(x)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, _training_path(model, x), rtol=1e-5, atol=1e-5)
    out = model(x)
    assert out.requires_grad
    out.sum().backward()
    assert model.layers[0].weight.grad is not None


def test_dropout_in_training_mode_is_not_skipped_without_grad():
    model = BatchedMLP(k=2, d_in=4, d_out=2, hidden=(64,), dropout=0.5).train()
    x = torch.randn(8, 4)
    with torch.no_grad():
        torch.manual_seed(0)
        a = model(x)
        torch.manual_seed(1)
        b = model(x)
    assert not torch.allclose(a, b)  # dropout still applied in train mode


def test_reduce_is_checked():
    with pytest.raises(ValueError, match="reduce"):
        BatchedMLP(k=2, d_in=3, d_out=2).infer(torch.randn(4, 3), reduce="max")
