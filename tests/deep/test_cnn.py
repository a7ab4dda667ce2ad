import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from ensemblex.deep import DeepEnsembleClassifier, DeepEnsembleRegressor
from ensemblex.deep.cnn import BatchedCNN, SmallCNN


def _plain_copy(model: BatchedCNN, j: int) -> nn.Sequential:
    """Member j rebuilt from torch.nn layers (independent of BatchedCNN.member)."""
    c1, c2 = model.channels
    h, w = model.image_size
    plain = nn.Sequential(
        nn.Conv2d(model.in_channels, c1, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * (h // 4) * (w // 4), model.n_classes),
    )
    with torch.no_grad():
        plain[0].weight.copy_(model.conv1_weight[j])
        plain[0].bias.copy_(model.conv1_bias[j])
        plain[3].weight.copy_(model.conv2_weight[j])
        plain[3].bias.copy_(model.conv2_bias[j])
        plain[7].weight.copy_(model.head.weight[j].T)
        plain[7].bias.copy_(model.head.bias[j, 0])
    return plain


@pytest.mark.parametrize(("in_channels", "image_size"), [(1, 8), (3, (12, 9))])
def test_batched_cnn_equals_its_members_run_one_by_one(in_channels, image_size):
    model = BatchedCNN(3, in_channels, image_size, 4, seed=2, channels=(5, 6))
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    x = torch.randn(7, in_channels, h, w)
    out = model(x)
    assert out.shape == (3, 7, 4)
    xs = torch.randn(3, 7, in_channels, h, w)  # each member its own batch
    out_per_member = model(xs)
    assert out_per_member.shape == (3, 7, 4)
    for j in range(3):
        plain = _plain_copy(model, j)
        torch.testing.assert_close(out[j], plain(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out_per_member[j], plain(xs[j]), rtol=1e-5, atol=1e-5)
        member = model.member(j)
        assert isinstance(member, SmallCNN)
        torch.testing.assert_close(member(x), out[j], rtol=1e-5, atol=1e-5)
    # the same input given per member equals the shared path
    torch.testing.assert_close(model(x.expand(3, -1, -1, -1, -1)), out, rtol=1e-5, atol=1e-5)
    # members start different
    assert not torch.allclose(model.conv1_weight[0], model.conv1_weight[1])
    assert not torch.allclose(model.head.weight[0], model.head.weight[1])


def test_batched_cnn_trains_with_autograd_and_rejects_bad_shapes():
    model = BatchedCNN(2, 1, 8, 3)
    loss = model(torch.randn(2, 5, 1, 8, 8)).square().mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.randn(5, 1, 7, 8))
    with pytest.raises(ValueError, match="at least 4x4"):
        BatchedCNN(2, 1, 3, 3)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)


def test_cnn_classifier_learns_digits_and_round_trips(digits, tmp_path):
    X_tr, X_te, y_tr, y_te = digits
    model = DeepEnsembleClassifier(
        n_members=3,
        architecture="cnn",
        image_shape=(1, 8, 8),
        channels=(8, 16),
        max_epochs=6,
        patience=5,
        batch_size=64,
        lr=1e-2,
    ).fit(X_tr, y_tr)
    assert isinstance(model.model_, BatchedCNN)
    members = model.predict_members(X_te)
    assert members.shape == (len(X_te), 3, 10)
    np.testing.assert_allclose(members.sum(axis=2), 1.0, atol=1e-6)
    assert np.abs(members[:, 0] - members[:, 1]).max() > 1e-3
    assert np.mean(model.predict(X_te) == y_te) > 0.9
    assert list(model.member_predictions(X_te).members) == ["cnn0", "cnn1", "cnn2"]
    # one mean/std for the single channel, not per pixel
    assert np.unique(model.x_mean_).size == 1 and np.unique(model.x_scale_).size == 1
    model.save(tmp_path / "cnn")
    loaded = DeepEnsembleClassifier.load(tmp_path / "cnn")
    assert loaded.architecture == "cnn" and loaded.image_shape == (1, 8, 8)
    assert isinstance(loaded.model_, BatchedCNN)
    np.testing.assert_array_equal(loaded.predict_members(X_te), members)


def test_cnn_regressor_and_multichannel_images():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(120, 2, 4, 6)).astype(np.float32)
    y = images[:, 0, :2, :3].mean(axis=(1, 2)) * 3.0
    X = images.reshape(len(images), -1)  # flattened as numpy does: channel, row, column
    model = DeepEnsembleRegressor(
        n_members=2, architecture="cnn", image_shape=(2, 4, 6), channels=(4, 4), max_epochs=3
    ).fit(X, y)
    assert model.predict_members(X).shape == (120, 2, 1)
    assert model.predict(X).shape == (120,)
    # per-channel scaling: one value per channel, repeated over its 24 pixels
    assert np.unique(model.x_mean_[:24]).size == 1 and model.x_mean_[0] != model.x_mean_[24]


def test_bad_architecture_and_image_shape(digits):
    X_tr, _, y_tr, _ = digits
    with pytest.raises(ValueError, match="architecture must be 'mlp' or 'cnn', however: archi"):
        DeepEnsembleClassifier(architecture="x").fit(X_tr, y_tr)
    with pytest.raises(ValueError, match=r"image_shape=\(1, 28, 28\) holds 784"):
        DeepEnsembleClassifier(architecture="cnn").fit(X_tr, y_tr)
    with pytest.raises(ValueError, match="image_shape must be \\(channels, height, width\\)"):
        DeepEnsembleClassifier(architecture="cnn", image_shape=(8, 8)).fit(X_tr, y_tr)
    with pytest.raises(ValueError, match="height and width >= 4"):
        DeepEnsembleClassifier(architecture="cnn", image_shape=(16, 2, 2)).fit(X_tr, y_tr)
    with pytest.raises(ValueError, match="channels must be two positive ints"):
        DeepEnsembleClassifier(architecture="cnn", image_shape=(1, 8, 8), channels=(8,)).fit(
            X_tr, y_tr
        )
    # the MLP ignores image_shape, as before
    model = DeepEnsembleClassifier(n_members=2, hidden=(4,), max_epochs=1, image_shape=(9, 9, 9))
    assert model.fit(X_tr, y_tr).predict_members(X_tr[:2]).shape == (2, 2, 10)
