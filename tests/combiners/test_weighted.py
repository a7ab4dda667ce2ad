import numpy as np
import pytest

from ensemblex import Mean, Predictions, Weighted
from ensemblex.metrics import get_metric
from ensemblex.tasks import encode_labels


def test_weights_lie_on_the_simplex_and_beat_mean_and_best_member(zoo):
    combiner = Weighted().fit(zoo.oof, zoo.y)
    w = combiner.weights_
    assert w.shape == (zoo.oof.n_members,)
    assert np.all(w >= 0) and w.sum() == pytest.approx(1.0)
    metric = get_metric("auto", zoo.oof.task)
    y = zoo.y if zoo.oof.classes is None else encode_labels(zoo.y, zoo.oof.classes)
    fitted = metric.loss(y, combiner.predict(zoo.oof))
    mean = metric.loss(y, Mean().fit(zoo.oof, zoo.y).predict(zoo.oof))
    best = min(metric.loss(y, zoo.oof.values[:, j]) for j in range(zoo.oof.n_members))
    assert fitted <= mean + 1e-9 and fitted <= best + 1e-9


def test_matches_a_grid_search_on_two_members(regression_zoo):
    P = regression_zoo.oof.select(["ridge", "forest"])
    y = regression_zoo.y
    combiner = Weighted().fit(P, y)
    grid = np.linspace(0, 1, 2001)
    errors = [np.mean((a * P.values[:, 0, 0] + (1 - a) * P.values[:, 1, 0] - y) ** 2) for a in grid]
    assert combiner.weights_[0] == pytest.approx(grid[int(np.argmin(errors))], abs=1e-3)


def test_sample_weight_moves_the_weights():
    rng = np.random.default_rng(0)
    y = rng.normal(size=400)
    good_first = np.where(np.arange(400) < 200, y, y + 3)[:, None]
    good_last = np.where(np.arange(400) < 200, y + 3, y)[:, None]
    P = Predictions(np.stack([good_first, good_last], axis=1), ["a", "b"], "regression")
    sw = np.where(np.arange(400) < 200, 10.0, 1.0)
    assert Weighted().fit(P, y, sample_weight=sw).weights_[0] > 0.8
    assert Weighted().fit(P, y).weights_[0] == pytest.approx(0.5, abs=0.05)
