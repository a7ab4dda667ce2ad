"""Feature-level fusion: a head over the frozen members' embeddings (ensemblex.deep.fusion)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import log_loss, mean_squared_error  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from ensemblex.crossfit import make_splits  # noqa: E402
from ensemblex.deep import DeepEnsembleClassifier, DeepEnsembleRegressor  # noqa: E402
from ensemblex.deep.fusion import FusionClassifier, FusionRegressor  # noqa: E402
from ensemblex.ensemble import EnsembleClassifier  # noqa: E402
from ensemblex.members import family_of, member  # noqa: E402
from ensemblex.members.torch import TorchMember, load_torch  # noqa: E402
from ensemblex.preprocessing import infer_schema, make_preprocessor  # noqa: E402

MEMBERS = dict(n_members=3, hidden=(16, 8), max_epochs=6, batch_size=64, lr=3e-3, random_state=4)


@pytest.fixture(scope="module")
def wine():
    X, y = load_wine(return_X_y=True)
    return X, np.array(["a", "b", "c"])[y]


@pytest.fixture(scope="module")
def wine_fusion(wine):
    X, y = wine
    model = FusionClassifier(
        **MEMBERS, head_hidden=(6,), head_start="random", head_lr=3e-3, head_max_epochs=15
    )
    return model.fit(X, y)


def _reference(model, X, head_inputs):
    """Members' raw outputs ``(K, n, d_out)`` and the head's raw output ``(n, d_out)`` by
    hand in float64: every member's MLP from its stored weights, the embeddings (and/or
    outputs) concatenated member by member, standardised, then the head's layers."""
    ensemble = model.deep_ensemble_
    x = (X - ensemble.x_mean_.astype(np.float64)) / ensemble.x_scale_.astype(np.float64)
    layers = ensemble.model_.layers
    embeddings, outputs = [], []
    for j in range(model.n_members):
        h = x
        for i, layer in enumerate(layers):
            w = layer.weight[j].detach().double().numpy()
            b = layer.bias[j, 0].detach().double().numpy()
            if i == len(layers) - 1:
                embeddings.append(h)
                outputs.append(h @ w + b)
            else:
                h = np.maximum(h @ w + b, 0.0)
    parts = {"embeddings": embeddings, "outputs": outputs, "both": embeddings + outputs}
    z = np.concatenate(parts[head_inputs], axis=1)
    head = model.model_.head
    h = (z - head.mean.double().numpy()) / head.scale.double().numpy()
    for i, layer in enumerate(head.layers):
        h = h @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()
        if i < len(head.layers) - 1:
            h = np.maximum(h, 0.0)
    return np.stack(outputs), h


def _softmax(a):
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_head_is_a_forward_pass_over_the_frozen_members_embeddings(wine, wine_fusion):
    X, y = wine
    model = wine_fusion
    outputs, fused = _reference(model, X, "embeddings")
    assert model.model_.head.layers[0].in_features == 3 * 8  # K members x last hidden width
    np.testing.assert_allclose(model.predict_proba(X), _softmax(fused), rtol=0, atol=1e-5)
    P = model.predict_members(X)
    assert P.shape == (len(X), 4, 3) and model.ensemble_size == 4
    np.testing.assert_allclose(P[:, :3], _softmax(outputs).transpose(1, 0, 2), atol=1e-5)
    np.testing.assert_array_equal(P[:, 3], model.predict_proba(X))
    assert model.predict(X).tolist() == model.classes_[fused.argmax(axis=1)].tolist()
    # the head is not the members' mean
    assert np.abs(P[:, 3] - P[:, :3].mean(axis=1)).max() > 1e-2
    # early stopping kept the head's best epoch, scored on the held-out rows
    rows = model.validation_rows_
    assert model.head_best_validation_loss_ == pytest.approx(min(model.head_history_))
    loss = log_loss(y[rows], model.predict_proba(X[rows]), labels=model.classes_)
    assert loss == pytest.approx(model.head_best_validation_loss_, rel=1e-4)
    names = model.member_predictions(X[:5]).members
    assert list(names) == ["mlp0", "mlp1", "mlp2", "fusion"]


def test_regressor_head_reading_embeddings_and_outputs():
    X, y = load_diabetes(return_X_y=True)
    model = FusionRegressor(**MEMBERS, head_inputs="both", head_max_epochs=10, head_lr=1e-2)
    outputs, fused = _reference(model.fit(X, y), X, "both")
    assert model.model_.head.layers[0].in_features == 3 * (8 + 1)
    assert np.argmin(model.head_history_) > 0  # the head learned past its start
    expected = fused[:, 0] * model.y_scale_ + model.y_mean_
    np.testing.assert_allclose(model.predict(X), expected, rtol=1e-5)
    members = outputs[:, :, 0].T * model.y_scale_ + model.y_mean_
    np.testing.assert_allclose(model.predict_members(X)[:, :3, 0], members, rtol=1e-5)
    rows = model.validation_rows_
    mse = mean_squared_error(y[rows], model.predict(X[rows])) / model.y_scale_**2
    assert mse == pytest.approx(model.head_best_validation_loss_, rel=1e-4)


@pytest.mark.parametrize("head_inputs", ["embeddings", "outputs", "both"])
def test_average_start_is_the_mean_of_the_members_logits(wine, head_inputs):
    X, y = wine
    # lr 0: the head keeps its start, which must be the members' averaged logits
    model = FusionClassifier(**MEMBERS, head_inputs=head_inputs, head_lr=0.0, head_max_epochs=2)
    outputs, fused = _reference(model.fit(X, y), X, head_inputs)
    np.testing.assert_allclose(fused, outputs.mean(axis=0), rtol=0, atol=1e-4)
    np.testing.assert_allclose(model.predict_proba(X), _softmax(outputs.mean(axis=0)), atol=1e-5)
    # the start is epoch 0 of early stopping, scored on the rows the members held out
    rows = model.validation_rows_
    start = log_loss(y[rows], _softmax(outputs.mean(axis=0))[rows], labels=model.classes_)
    assert model.head_history_[0] == pytest.approx(start, rel=1e-4)


@pytest.mark.parametrize("head_rows", ["train", "held_out"])
def test_head_rows_decide_where_the_head_learns_and_stops(wine, head_rows):
    X, y = wine
    model = FusionClassifier(**MEMBERS, head_rows=head_rows, head_max_epochs=3).fit(X, y)
    held_out = model.validation_rows_
    if head_rows == "train":
        fit_rows, stop_rows = np.setdiff1d(np.arange(len(X)), held_out), held_out
    else:  # a stratified, seeded split of the held-out rows, 30% to stop on
        codes = np.searchsorted(model.classes_, y)
        fit_rows, stop_rows = train_test_split(
            held_out, test_size=0.3, random_state=4, stratify=codes[held_out]
        )
    x = (X - model.deep_ensemble_.x_mean_) / model.deep_ensemble_.x_scale_
    z = model.model_.features(torch.as_tensor(x, dtype=torch.float32))[0].numpy()
    # the head standardises with its training rows' statistics
    np.testing.assert_allclose(model.model_.head.mean.numpy(), z[fit_rows].mean(axis=0), atol=1e-5)
    # and its early-stopping loss is the log-loss on its stopping rows
    best = int(np.argmin(model.head_history_))
    loss = log_loss(y[stop_rows], model.predict_proba(X[stop_rows]), labels=model.classes_)
    assert model.head_history_[best] == pytest.approx(loss, rel=1e-4)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_members_are_the_deep_ensembles_trained_alone(kind):
    if kind == "classifier":
        X, y = load_breast_cancer(return_X_y=True)
        fusion, alone = FusionClassifier(**MEMBERS), DeepEnsembleClassifier(**MEMBERS)
    else:
        X, y = load_diabetes(return_X_y=True)
        fusion, alone = FusionRegressor(**MEMBERS), DeepEnsembleRegressor(**MEMBERS)
    fusion.set_params(head_max_epochs=2).fit(X, y)
    alone.fit(X, y)
    ours, theirs = fusion.deep_ensemble_.model_.state_dict(), alone.model_.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    np.testing.assert_array_equal(fusion.validation_rows_, alone.validation_rows_)
    np.testing.assert_allclose(
        fusion.predict_members(X)[:, :3], alone.predict_members(X), rtol=1e-5, atol=1e-6
    )


def test_save_load_round_trip(wine, wine_fusion, tmp_path):
    X, _ = wine
    path = wine_fusion.save(tmp_path / "fusion.safetensors")
    for loaded in (FusionClassifier.load(path), load_torch(path)):
        assert type(loaded) is FusionClassifier
        np.testing.assert_array_equal(loaded.predict_members(X), wine_fusion.predict_members(X))
        np.testing.assert_array_equal(loaded.predict_proba(X), wine_fusion.predict_proba(X))
    with pytest.raises(ValueError, match="not a saved FusionRegressor"):
        FusionRegressor.load(path)
    # the head alone: one column, the same numbers
    head_only = clone(wine_fusion).set_params(member_columns=False)
    assert head_only.ensemble_size == 1
    restored = FusionClassifier.load(wine_fusion.save(tmp_path / "b.safetensors"))
    restored.set_params(member_columns=False)
    np.testing.assert_array_equal(restored.predict_members(X)[:, 0], wine_fusion.predict_proba(X))


def test_bad_settings_are_clear_errors(wine):
    X, y = wine
    with pytest.raises(ValueError, match="head_inputs must be one of"):
        FusionClassifier(head_inputs="logits").fit(X, y)
    with pytest.raises(ValueError, match="head_start='average' needs a linear head"):
        FusionClassifier(head_hidden=(4,)).fit(X, y)
    with pytest.raises(ValueError, match="head_rows must be one of"):
        FusionClassifier(head_rows="all").fit(X, y)
    with pytest.raises(ValueError, match="hidden must hold at least one layer"):
        FusionClassifier(hidden=()).fit(X, y)
    with pytest.raises(RuntimeError, match="not fitted"):
        FusionClassifier().predict(X)


def test_a_member_of_a_crossfitted_ensemble(churn_table, tmp_path):
    frame = churn_table.head(240)
    y = frame["Exited"].to_numpy()
    X = frame.drop(columns=["Exited"])
    fusion = FusionClassifier(
        n_members=2, hidden=(8,), max_epochs=3, batch_size=32, head_max_epochs=3, n_threads=1
    )
    assert family_of(fusion) == "torch"
    assert isinstance(member("fusion", fusion), TorchMember)
    model = EnsembleClassifier(
        members=[("fusion", fusion), ("lr", LogisticRegression(max_iter=300))],
        cv=2,
        combiner="greedy",
        n_jobs=1,
    ).fit(X, y)
    assert model.member_names_ == ["fusion.0", "fusion.1", "fusion.2", "lr"]
    # reference: each fold's fusion model fitted by hand on the fold's one-hot encoding
    oof = model.oof_.values[:, :3]
    for train_rows, test_rows in make_splits(y, "binary", 2, 0):
        pre = make_preprocessor(infer_schema(X.iloc[train_rows]), "onehot")
        ref = clone(fusion).fit(pre.fit_transform(X.iloc[train_rows]), y[train_rows])
        expected = ref.predict_members(pre.transform(X.iloc[test_rows]))
        np.testing.assert_allclose(oof[test_rows], expected, rtol=0, atol=1e-6)
    model.save(tmp_path / "saved")
    loaded = EnsembleClassifier.load(tmp_path / "saved")
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), atol=1e-12)
