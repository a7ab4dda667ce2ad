"""The reliability diagram draws the ECE's bins: one binning for both."""

import numpy as np
import pytest

from ensemblex.metrics.calibration import expected_calibration_error, reliability_bins
from ensemblex.report import plots
from ensemblex.tasks import encode_labels


def _brute_force_points(proba, y, n_bins):
    """Equal-width bins [lo, hi) and a last bin for confidence 1, by a loop over bins."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    edges = np.linspace(0, 1, n_bins + 1)
    points = []
    for b in range(n_bins + 1):
        if b < n_bins:
            inside = (confidence >= edges[b]) & (confidence < edges[b + 1])
        else:
            inside = confidence == 1.0
        if inside.any():
            points.append((confidence[inside].mean(), correct[inside].mean(), inside.sum()))
    return np.array(points)


@pytest.fixture
def curves(multiclass_zoo):
    P = multiclass_zoo.test
    y = encode_labels(multiclass_zoo.y_test, P.classes)
    return {"ensemble": P.values.mean(axis=1), "tree": P.member("tree")}, y


def test_points_are_the_ece_bins(curves):
    proba_by_name, y = curves
    for proba in proba_by_name.values():
        confidence, accuracy = plots.reliability_points(proba, y)
        ref = _brute_force_points(proba, y, 15)
        np.testing.assert_allclose(confidence, ref[:, 0], rtol=1e-12)
        np.testing.assert_allclose(accuracy, ref[:, 1], rtol=1e-12)
        bins = reliability_bins(proba, y)
        keep = bins.count > 0
        np.testing.assert_array_equal(confidence, bins.confidence[keep])
        # the gaps the diagram shows, weighted by the bins' counts, are the ECE
        ece = np.sum(np.abs(accuracy - confidence) * ref[:, 2]) / len(y)
        assert ece == pytest.approx(expected_calibration_error(proba, y), rel=1e-12)


def test_diagram_plots_those_points(curves, monkeypatch):
    proba_by_name, y = curves
    drawn = {}

    def capture(fig):
        drawn["fig"] = fig
        return "png"

    monkeypatch.setattr(plots, "_png", capture)
    assert plots.reliability_diagram(proba_by_name, y, n_bins=10) == "png"
    lines = drawn["fig"].axes[0].get_lines()[1:]  # the first is the diagonal
    assert len(lines) == len(proba_by_name)
    for line, (name, proba) in zip(lines, proba_by_name.items()):
        ref = _brute_force_points(proba, y, 10)
        np.testing.assert_allclose(line.get_xdata(), ref[:, 0], rtol=1e-12)
        np.testing.assert_allclose(line.get_ydata(), ref[:, 1], rtol=1e-12)
        ece = expected_calibration_error(proba, y, n_bins=10)
        assert line.get_label() == f"{name} (ECE {ece:.4f})"
