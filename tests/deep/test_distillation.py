import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes, load_digits
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn

from ensemblex import Predictions
from ensemblex.deep import BatchedMLP
from ensemblex.deep.distillation import distill, flops_per_sample, share_of_gain_kept


def _student(d_in, d_out, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, 16), nn.ReLU(), nn.Linear(16, d_out))


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    teacher = RandomForestClassifier(n_estimators=50, random_state=0).fit(X_tr, y_tr)
    p_tr, p_te = teacher.predict_proba(X_tr), teacher.predict_proba(X_te)
    scaler = StandardScaler().fit(X_tr)
    X_tr, X_te = (scaler.transform(a).astype(np.float32) for a in (X_tr, X_te))
    return X_tr, X_te, y_tr, y_te, p_tr, p_te


def _proba(net, X):
    with torch.no_grad():
        return torch.softmax(net(torch.from_numpy(X)), dim=-1).numpy()


def test_flops_per_sample_counts_matrix_products():
    assert flops_per_sample(nn.Linear(10, 5), torch.zeros(7, 10)) == 2 * 10 * 5
    mlp = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))
    assert flops_per_sample(mlp, np.zeros((4, 10))) == 2 * (10 * 8 + 8 * 3)
    # K batched members cost K single members
    batched = BatchedMLP(k=5, d_in=10, d_out=3, hidden=(8,))
    assert flops_per_sample(batched, torch.zeros(4, 10)) == 5 * 2 * (10 * 8 + 8 * 3)
    assert mlp.training  # the mode is restored


def test_share_of_gain_kept_in_both_directions():
    assert share_of_gain_kept(student=0.95, single=0.90, ensemble=0.96) == pytest.approx(5 / 6)
    # log-loss: lower is better, the signs cancel
    assert share_of_gain_kept(student=0.35, single=0.40, ensemble=0.30) == pytest.approx(0.5)
    assert share_of_gain_kept(student=0.96, single=0.90, ensemble=0.96) == pytest.approx(1.0)
    assert share_of_gain_kept(student=0.88, single=0.90, ensemble=0.96) < 0
    with pytest.raises(ValueError, match="ensemble=0.9, single=0.9"):
        share_of_gain_kept(student=0.95, single=0.9, ensemble=0.9)


def test_distilled_student_follows_the_teacher_more_than_a_label_only_student(digits):
    X_tr, X_te, y_tr, y_te, p_tr, p_te = digits
    kwargs = dict(task="multiclass", epochs=15, lr=3e-3, batch_size=64, random_state=0)
    taught = distill(_student(64, 10), X_tr, p_tr, y_tr, alpha=1.0, **kwargs).student
    labels = distill(_student(64, 10), X_tr, p_tr, y_tr, alpha=0.0, **kwargs).student
    q_taught, q_labels = _proba(taught, X_te), _proba(labels, X_te)
    teacher_says = p_te.argmax(axis=1)
    agree_taught = (q_taught.argmax(axis=1) == teacher_says).mean()
    agree_labels = (q_labels.argmax(axis=1) == teacher_says).mean()
    assert agree_taught >= agree_labels

    def kl(q):  # KL(teacher || student) on test rows
        return np.sum(p_te * (np.log(p_te + 1e-12) - np.log(q + 1e-12)), axis=1).mean()

    assert kl(q_taught) < 0.75 * kl(q_labels)
    assert (q_taught.argmax(axis=1) == y_te).mean() > 0.85


def test_distill_accepts_member_predictions_and_averages_them(digits):
    X_tr, _, y_tr, _, p_tr, _ = digits
    rng = np.random.default_rng(0)
    noise = rng.dirichlet(np.ones(10), size=len(p_tr))
    members = np.stack([p_tr * 0.8 + noise * 0.2, p_tr * 1.2 - noise * 0.2], axis=1)
    members = np.clip(members, 0, None)
    members /= members.sum(axis=2, keepdims=True)
    kwargs = dict(task="multiclass", alpha=0.5, epochs=2, batch_size=64, random_state=1)
    from_mean = distill(_student(64, 10), X_tr, members.mean(axis=1), y_tr, **kwargs)
    from_array = distill(_student(64, 10), X_tr, members, y_tr, **kwargs)
    P = Predictions(members, ["a", "b"], "multiclass")
    from_predictions = distill(_student(64, 10), X_tr, P, y_tr, **kwargs)
    for other in (from_array, from_predictions):
        torch.testing.assert_close(other.state["0.weight"], from_mean.state["0.weight"])


def test_distill_keeps_the_best_epoch_on_validation(digits):
    X_tr, X_te, y_tr, y_te, p_tr, _ = digits
    result = distill(
        _student(64, 10),
        X_tr,
        p_tr,
        y_tr,
        task="multiclass",
        epochs=40,
        lr=0.05,
        batch_size=32,
        validation=(X_te, y_te),
        patience=2,
    )
    assert len(result.val_history) == len(result.history) < 40  # stopped early
    assert result.best_epoch == int(np.argmin(result.val_history))
    for key, value in result.student.state_dict().items():
        assert torch.equal(value, result.state[key])


def test_distill_regression_follows_the_teacher_mean():
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    y = ((y - y.mean()) / y.std()).astype(np.float32)
    teacher = RandomForestRegressor(n_estimators=30, random_state=0).fit(X, y).predict(X)
    kwargs = dict(task="regression", epochs=20, lr=1e-2, batch_size=32)
    taught = distill(_student(10, 1), X, teacher, y, alpha=1.0, **kwargs).student
    labels = distill(_student(10, 1), X, teacher, y, alpha=0.0, **kwargs).student
    with torch.no_grad():
        out_t, out_l = (net(torch.from_numpy(X))[:, 0].numpy() for net in (taught, labels))
    assert np.mean((out_t - teacher) ** 2) < np.mean((out_l - teacher) ** 2)


def test_distill_checks_its_arguments(digits):
    X_tr, _, y_tr, _, p_tr, _ = digits
    net = _student(64, 10)
    with pytest.raises(ValueError, match="alpha=1.5"):
        distill(net, X_tr, p_tr, y_tr, task="multiclass", alpha=1.5)
    with pytest.raises(ValueError, match="y=None"):
        distill(net, X_tr, p_tr, None, task="multiclass", alpha=0.5)
    with pytest.raises(ValueError, match="teacher's 3 classes"):
        distill(net, X_tr, np.full((len(X_tr), 3), 1 / 3), y_tr, task="multiclass")
    with pytest.raises(ValueError, match="probabilities"):
        distill(net, X_tr, p_tr * 2, y_tr, task="multiclass")
    with pytest.raises(ValueError, match="rows like X"):
        distill(net, X_tr, p_tr[:10], y_tr, task="multiclass")
    # alpha=1 needs no labels
    distill(net, X_tr[:64], p_tr[:64], None, task="multiclass", alpha=1.0, epochs=1)
