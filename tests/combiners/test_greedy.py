from collections import Counter

import numpy as np
import pytest

from ensemblex import GreedySelection, Predictions
from ensemblex.metrics import get_metric
from ensemblex.tasks import encode_labels


def reference_selection(values, y, metric, n_iterations=25):
    """AutoGluon's EnsembleSelection loop, one scikit-learn metric call per candidate."""
    ensemble, order, trajectory = [], [], []
    for _ in range(n_iterations):
        s = len(ensemble)
        current = np.mean(ensemble, axis=0) if ensemble else 0.0
        losses = [
            metric.loss(y, (s * current + values[:, j]) / (s + 1)) for j in range(values.shape[1])
        ]
        best = min(
            np.flatnonzero(np.isclose(losses, min(losses), rtol=1e-12, atol=0)),
            key=lambda j: (j not in order, j),
        )
        ensemble.append(values[:, best])
        order.append(best)
        trajectory.append(losses[best])
    prefix = int(np.argmin(trajectory)) + 1
    counts = Counter(order[:prefix])
    return np.array([counts[j] / prefix for j in range(values.shape[1])]), trajectory


@pytest.mark.parametrize("metric", ["auto", "accuracy"])
def test_matches_reference_selection(zoo, metric):
    if zoo.oof.task == "regression" and metric == "accuracy":
        metric = "mae"
    combiner = GreedySelection(metric=metric).fit(zoo.oof, zoo.y)
    y = zoo.y if zoo.oof.classes is None else encode_labels(zoo.y, zoo.oof.classes)
    weights, trajectory = reference_selection(zoo.oof.values, y, combiner.metric_)
    np.testing.assert_allclose(combiner.weights_, weights)
    sign = -1 if combiner.metric_.greater_is_better else 1
    np.testing.assert_allclose(sign * combiner.trajectory_, trajectory, rtol=1e-10)
    assert combiner.weights_.sum() == pytest.approx(1.0)
    assert len(combiner.indices_) == combiner.best_iteration_
    np.testing.assert_allclose(
        combiner.predict(zoo.test), np.einsum("nmk,m->nk", zoo.test.values, combiner.weights_)
    )


def test_best_prefix_is_kept():
    rng = np.random.default_rng(1)
    y = rng.normal(size=300)
    exact = y[:, None]
    P = Predictions(
        np.stack([exact, exact + rng.normal(size=(300, 1))], axis=1),
        ["exact", "noisy"],
        "regression",
    )
    combiner = GreedySelection(n_iterations=10).fit(P, y)
    assert combiner.indices_ == [0]
    np.testing.assert_array_equal(combiner.weights_, [1.0, 0.0])
    assert len(combiner.trajectory_) == 10


def test_ties_are_deterministic_and_prefer_used_members():
    rng = np.random.default_rng(2)
    y = rng.normal(size=200)
    a = (y + rng.normal(scale=0.5, size=200))[:, None]
    P = Predictions(np.stack([a, a, a], axis=1), ["a", "a_copy", "a_copy2"], "regression")
    combiner = GreedySelection(n_iterations=5).fit(P, y)
    assert set(combiner.indices_) == {0}


def test_without_replacement_picks_each_member_at_most_once(multiclass_zoo):
    combiner = GreedySelection(with_replacement=False).fit(multiclass_zoo.oof, multiclass_zoo.y)
    assert len(set(combiner.indices_)) == len(combiner.indices_)
    assert len(combiner.trajectory_) == multiclass_zoo.oof.n_members


def test_sample_weight_is_used(binary_zoo):
    sw = np.linspace(0.1, 5, len(binary_zoo.y))
    weighted = GreedySelection().fit(binary_zoo.oof, binary_zoo.y, sample_weight=sw)
    y = encode_labels(binary_zoo.y, binary_zoo.oof.classes)
    weights, _ = reference_selection_weighted(binary_zoo.oof.values, y, weighted.metric_, sw)
    np.testing.assert_allclose(weighted.weights_, weights)


def reference_selection_weighted(values, y, metric, sw):
    class Weighted:
        greater_is_better = metric.greater_is_better

        def loss(self, y_, pred):
            return metric.loss(y_, pred, sw)

    return reference_selection(values, y, Weighted())


def test_rejects_bad_iterations(regression_zoo):
    with pytest.raises(ValueError, match=r"'n_iterations' parameter .* range \[1, inf\)"):
        GreedySelection(n_iterations=0).fit(regression_zoo.oof, regression_zoo.y)


def test_metric_for_the_wrong_task(regression_zoo):
    with pytest.raises(ValueError, match="is for classification"):
        GreedySelection(metric="log_loss").fit(regression_zoo.oof, regression_zoo.y)


def test_auto_metric_is_log_loss_for_classes(binary_zoo):
    assert GreedySelection().fit(binary_zoo.oof, binary_zoo.y).metric_ is get_metric(
        "log_loss", "binary"
    )


def test_bagged_selection_averages_selections_on_bootstrap_rows(zoo):
    from sklearn.utils import check_random_state

    bagged = GreedySelection(n_bags=5, random_state=3).fit(zoo.oof, zoo.y)
    rng = check_random_state(3)
    expected = np.zeros(zoo.oof.n_members)
    for _ in range(5):
        rows = rng.randint(0, len(zoo.y), len(zoo.y))
        expected += GreedySelection().fit(zoo.oof.take(rows), zoo.y[rows]).weights_ / 5
    np.testing.assert_allclose(bagged.weights_, expected, rtol=1e-12)
    np.testing.assert_allclose(bagged.weights_.sum(), 1.0)
    # the trajectory and picks describe the selection on all rows
    plain = GreedySelection().fit(zoo.oof, zoo.y)
    assert bagged.indices_ == plain.indices_
    same = GreedySelection(n_bags=5, random_state=3).fit(zoo.oof, zoo.y)
    np.testing.assert_array_equal(same.weights_, bagged.weights_)


def test_log_loss_selection_reads_only_the_true_class_with_the_same_numbers(zoo, monkeypatch):
    selection = GreedySelection().fit(zoo.oof, zoo.y)
    y = zoo.y if zoo.oof.classes is None else encode_labels(zoo.y, zoo.oof.classes)
    part, labels = selection.metric_.scored_part(y, zoo.oof.values)
    if zoo.oof.task == "regression":
        assert part is zoo.oof.values
        return
    assert part.shape == (zoo.oof.n_samples, zoo.oof.n_members, 1) and not labels.any()
    np.testing.assert_array_equal(part[:, :, 0], zoo.oof.values[np.arange(len(y)), :, y])
    # the selection on every class's probabilities picks the same, with the same losses
    full = GreedySelection().fit(zoo.oof, zoo.y)
    weights = full._select(zoo.oof.values, y, None)
    np.testing.assert_array_equal(weights, selection.weights_)
    np.testing.assert_array_equal(full.trajectory_, selection.trajectory_)
    # and so do bagged selections with sample weights
    sw = np.random.default_rng(0).uniform(0, 2, len(y))
    bagged = GreedySelection(n_bags=3).fit(zoo.oof, zoo.y, sample_weight=sw)
    with monkeypatch.context() as patch:  # every class's probabilities, as before
        patch.setattr(type(bagged.metric_), "scored_part", lambda self, y, values: (values, y))
        reference = GreedySelection(n_bags=3).fit(zoo.oof, zoo.y, sample_weight=sw)
    np.testing.assert_array_equal(reference.weights_, bagged.weights_)
    accuracy = get_metric("accuracy", zoo.oof.task)
    assert accuracy.scored_part(y, zoo.oof.values)[0] is zoo.oof.values
