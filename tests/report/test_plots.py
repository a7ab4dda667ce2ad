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


def _capture(monkeypatch):
    """Make the plots return their figure (``drawn["fig"]``) instead of a PNG."""
    drawn = {}

    def capture(fig):
        drawn["fig"] = fig
        fig.canvas.draw()  # lay out, as saving would: the boxes below are then final
        return "png"

    monkeypatch.setattr(plots, "_png", capture)
    return drawn


def _text_boxes(fig):
    from matplotlib.text import Text

    renderer = fig.canvas.get_renderer()
    return {
        t.get_text(): Text.get_window_extent(t, renderer)
        for t in fig.axes[0].texts
        if t.get_gid() != "key"  # the key beside the axes names the numbered points
    }


@pytest.mark.parametrize("spread", [1.0, 0.02, 0.0])
def test_scatter_labels_never_overlap_and_name_every_member(monkeypatch, spread):
    """Crowded (a tight cluster, even identical points) or not, no two labels overlap and
    every member is named, by a label or by a number and the key beside the plot."""
    import matplotlib.pyplot as plt

    from ensemblex.predictions import Predictions

    rng = np.random.default_rng(0)
    names = [f"member_{i}_with_a_long_name" for i in range(14)]
    base = rng.uniform(0.2, 0.8, size=(200, 1))
    noise = rng.normal(0, 1, size=(200, len(names)))
    p1 = np.clip(base + spread * 0.1 * noise, 0.01, 0.99)
    p1[:, -2:] = rng.uniform(0.01, 0.99, size=(200, 2))  # two outliers: the rest cluster
    P = Predictions(np.stack([1 - p1, p1], axis=2), names, "binary", classes=np.array([0, 1]))
    scores = {n: 0.3 + spread * 0.01 * i for i, n in enumerate(names[:-2])}
    scores |= {names[-2]: 0.6, names[-1]: 0.7}
    drawn = _capture(monkeypatch)
    plots.score_vs_diversity(P, scores, "log_loss")
    fig = drawn["fig"]
    boxes = _text_boxes(fig)
    labels = list(boxes.values())
    overlaps = [(a, b) for i, a in enumerate(labels) for b in labels[i + 1 :] if a.overlaps(b)]
    key = "".join(t.get_text() for t in fig.axes[0].texts if t.get_gid() == "key")
    numbered = {line.split(": ")[1] for line in key.splitlines()}
    assert numbered.isdisjoint(boxes)  # each member named once
    named = {n for n in names if n in boxes} | numbered
    if spread < 1:
        assert numbered  # crowded: the numbers and the key are exercised
    if spread == 0.0:  # identical points: numbers stacked at one spot may overlap
        assert named == set(names)
    else:
        assert not overlaps, overlaps
        assert named == set(names)
    frame = fig.axes[0].get_window_extent(fig.canvas.get_renderer())
    for name, box in boxes.items():
        if not name.isdigit():
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1, name
    plt.close(fig)


def test_scatter_labels_by_name_when_there_is_room(monkeypatch):
    from ensemblex.predictions import Predictions

    rng = np.random.default_rng(1)
    p1 = rng.uniform(0.05, 0.95, size=(300, 4))
    P = Predictions(np.stack([1 - p1, p1], axis=2), list("abcd"), "binary", classes=[0, 1])
    drawn = _capture(monkeypatch)
    plots.score_vs_diversity(P, dict(zip("abcd", [0.1, 0.5, 0.9, 0.3])), "log_loss")
    assert set(_text_boxes(drawn["fig"])) == set("abcd")  # names, no numbers, no key


@pytest.mark.parametrize("k", [2, 3, 10])
def test_ood_histograms_span_each_score_and_label_the_y_axis(monkeypatch, k):
    from ensemblex.metrics.ood import OOD_SCORES

    rng = np.random.default_rng(0)
    P_id = rng.dirichlet(np.full(k, 0.3), size=(300, 3))
    P_ood = rng.dirichlet(np.full(k, 3.0), size=(100, 3))
    scores = {name: (f(P_id), f(P_ood)) for name, f in OOD_SCORES.items()}
    drawn = _capture(monkeypatch)
    plots.ood_histograms(scores, n_classes=k)
    axes = drawn["fig"].axes
    assert len(axes) == len(scores)
    spans = {"max_probability": 1 - 1 / k, "entropy": np.log(k), "mutual_information": np.log(k)}
    for ax, name in zip(axes, scores):
        assert ax.get_xlim() == pytest.approx((0.0, spans[name]))
        assert "density" in ax.get_ylabel()
        assert ax.get_xlabel()
    assert "1 - max probability" in axes[0].get_xlabel()


def test_cascade_plot_shows_the_choice_on_oof_and_test_rows(monkeypatch):
    from ensemblex.cascade import OperatingPoint

    front = [OperatingPoint(t, c, c, a) for t, c, a in [(0.6, 1, 0.80), (0.9, 2, 0.86)]]
    chosen = OperatingPoint(0.8, 1.5, 0.4, 0.83)  # below its front: allowed
    test_front = [OperatingPoint(t, c, c / 3, a) for t, c, a in [(0.6, 1.1, 0.78), (0.9, 2, 0.84)]]
    test_chosen = OperatingPoint(0.8, 1.4, 0.45, 0.81)
    drawn = _capture(monkeypatch)
    plots.cascade_front_plot(
        front, chosen, test_front, test_chosen, target_accuracy=0.82, test_full_accuracy=0.85
    )
    ax = drawn["fig"].axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("OOF rows" in t and "chosen here" in t for t in legend)
    assert any(t.startswith("chosen threshold on OOF rows") for t in legend)
    assert any(t.startswith("chosen threshold on test rows: 45.0%") for t in legend)
    assert "the same thresholds on test rows" in legend
    # the chosen points are drawn where they are, each on its own rows
    offsets = [c.get_offsets()[0].tolist() for c in ax.collections]
    assert [0.4, 0.83] in offsets and [0.45, 0.81] in offsets
