"""Report figures, drawn with matplotlib and returned as base64 PNG for inline embedding."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")  # headless: no display is needed to draw the report
import matplotlib.pyplot as plt
import matplotlib.ticker
import matplotlib.transforms
import numpy as np
from matplotlib.text import Text

from ensemblex.metrics.calibration import expected_calibration_error, reliability_bins
from ensemblex.predictions import Predictions


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def member_signals(P: Predictions) -> np.ndarray:
    """One column per member: the value, P(positive), or flattened class probabilities."""
    if P.task == "binary":
        return P.values[:, :, 1]
    return P.values.transpose(1, 0, 2).reshape(P.n_members, -1).T


def correlation_matrix(P: Predictions) -> np.ndarray:
    """``(n_members, n_members)``, also for one member (``np.corrcoef`` gives a scalar)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.atleast_2d(np.corrcoef(member_signals(P).T))
    return np.nan_to_num(corr, nan=0.0)


def weights_plot(weights: dict[str, float], title: str) -> str:
    names = list(weights)
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(names) + 1))
    ax.barh(names, [weights[n] for n in names], color="#3b75af")
    ax.invert_yaxis()
    ax.set_xlabel("weight")
    ax.set_title(title)
    return _png(fig)


def correlation_heatmap(P: Predictions) -> str:
    corr = correlation_matrix(P)
    size = 0.35 * P.n_members + 2
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(corr, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(P.n_members), P.members, rotation=90)
    ax.set_yticks(range(P.n_members), P.members)
    fig.colorbar(image, ax=ax, label="correlation of OOF predictions")
    ax.set_title("Member correlation")
    return _png(fig)


def score_vs_diversity(P: Predictions, scores: dict[str, float], metric: str) -> str:
    """Each member's OOF score against its diversity, every point named without overlaps.

    Names go next to their points where there is room, further out with a leader line where
    the points are crowded; a point with no room left for its name gets a number, and a
    key beside the plot names the numbered points.
    """
    corr = correlation_matrix(P)
    m = P.n_members
    diversity = 1.0 - (corr.sum(axis=1) - 1.0) / max(m - 1, 1)
    y = np.array([scores[name] for name in P.members], dtype=float)
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    ax.scatter(diversity, y, color="#3b75af", zorder=3)
    ax.margins(0.12)  # room for names at the edges
    ax.set_xlabel("diversity: 1 - mean correlation with the other members")
    ax.set_ylabel(f"OOF {metric}")
    ax.set_title("Member score vs diversity")
    numbered = place_labels(ax, diversity, y, list(P.members))
    if numbered:
        key = "\n".join(f"{k}: {name}" for k, name in numbered)
        ax.text(1.02, 1.0, key, transform=ax.transAxes, va="top", ha="left", fontsize=7, gid="key")
    return _png(fig)


# Offsets tried for a label, in points: close to the point first, then further out (with a
# leader line), in sixteen directions each (degrees; the diagonals first, then the sides).
_RADII = (6, 14, 24, 36, 50, 66)
_DIRECTIONS = (45, 315, 135, 225, 0, 180, 90, 270, *np.arange(22.5, 360, 45))


def place_labels(ax, x, y, names: list[str], fontsize: float = 7) -> list[tuple[int, str]]:
    """Name the points ``(x, y)`` of ``ax`` so that no two labels overlap, nor a label a
    point; return ``(number, name)`` for the points labelled by a number instead.

    Greedy: the points in the sparsest places are labelled first, each at the first free
    offset of :data:`_RADII` x :data:`_DIRECTIONS` inside the axes (a leader line links a
    label placed away from its point). A point with no free offset for its name tries a
    number (shorter); if even that collides, the number goes at the nearest offset.
    """
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    # Fix the limits first: autoscaling is lazy, and pixel positions must not move later
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    to_px = ax.transData.transform
    points = to_px(np.column_stack([x, y]))
    marker = 4.0 * fig.dpi / 72  # half the marker's size, in pixels
    taken = [
        matplotlib.transforms.Bbox.from_extents(px - marker, py - marker, px + marker, py + marker)
        for px, py in points
    ]
    labels: list = []  # the boxes of the labels placed so far
    frame = ax.get_window_extent(renderer)
    gaps = np.sort(np.linalg.norm(points[:, None] - points[None], axis=2), axis=1)
    nearest = gaps[:, 1] if len(points) > 1 else np.zeros(len(points))
    numbered: list[tuple[int, str]] = []
    for i in np.argsort(-nearest, kind="stable"):  # sparsest first: they place easily
        place = (ax, renderer, points[i], (x[i], y[i]), taken, labels, frame, fontsize)
        text = _place_one(names[i], *place)
        if text is None:
            number = str(len(numbered) + 1)
            # a number's leader line may cross a label: better than a number on top of one
            text = _place_one(number, *place) or _place_one(number, *place, leaders=False)
            if text is None:  # crowded beyond room: overlap rather than lose the point
                text = _annotate(ax, (x[i], y[i]), number, _RADII[0], 45, fontsize)
                taken.append(_text_box(text, renderer))
                labels.append(taken[-1])
            numbered.append((int(number), names[i]))
    return sorted(numbered)


def _text_box(label, renderer):
    """Pixel box of an annotation's text alone (its extent also covers the leader line)."""
    label.update_positions(renderer)  # an annotation's text is positioned at draw time
    return Text.get_window_extent(label, renderer)


def _annotate(ax, xy, text, radius, direction, fontsize):
    """``text`` at ``radius`` points from ``xy`` towards ``direction`` (degrees), aligned so
    that it extends away from the point; with a leader line unless it is next to it."""
    dx, dy = np.cos(np.radians(direction)), np.sin(np.radians(direction))
    side = lambda v: 0 if abs(v) < 0.2 else int(np.sign(v))  # noqa: E731
    leader = {"arrowstyle": "-", "color": "grey", "lw": 0.6} if radius > _RADII[0] else None
    return ax.annotate(
        text,
        xy,
        xytext=(radius * dx, radius * dy),
        textcoords="offset points",
        fontsize=fontsize,
        ha={1: "left", -1: "right", 0: "center"}[side(dx)],
        va={1: "bottom", -1: "top", 0: "center"}[side(dy)],
        arrowprops=leader,
    )


def _place_one(text, ax, renderer, point_px, xy, taken, labels, frame, fontsize, leaders=True):
    """The first free offset's label for one point (its box added to ``taken`` and
    ``labels``), or None.

    Free: inside the axes, clear of every box in ``taken`` (labels and points), and with a
    leader line that crosses no other label (it may pass between points of a cluster);
    ``leaders=False`` drops that last condition.
    """
    for radius in _RADII:
        for direction in _DIRECTIONS:
            label = _annotate(ax, xy, text, radius, direction, fontsize)
            box = _text_box(label, renderer).expanded(1.08, 1.15)
            inside = (
                frame.x0 <= box.x0
                and box.x1 <= frame.x1
                and frame.y0 <= box.y0
                and box.y1 <= frame.y1
            )
            if inside and not any(box.overlaps(other) for other in taken):
                if not (leaders and _crosses(point_px, box, labels)):
                    taken.append(box)
                    labels.append(box)
                    return label
            label.remove()
    return None


def _crosses(start, box, boxes) -> bool:
    """Whether the segment from ``start`` to the nearest point of ``box`` passes through any
    of ``boxes``."""
    end = np.clip(start, [box.x0, box.y0], [box.x1, box.y1])
    path = start + np.linspace(0, 1, 24)[:, None] * (end - start)
    for other in boxes:
        inside = (
            (path[:, 0] > other.x0)
            & (path[:, 0] < other.x1)
            & (path[:, 1] > other.y0)
            & (path[:, 1] < other.y1)
        )
        if inside.any():
            return True
    return False


def reliability_points(
    proba: np.ndarray, y: np.ndarray, n_bins: int = 15, strategy: str = "uniform"
) -> tuple[np.ndarray, np.ndarray]:
    """The diagram's points: mean confidence and accuracy of each non-empty bin.

    The bins are :func:`ensemblex.metrics.calibration.reliability_bins`' (the ECE's), so the
    diagram shows exactly the gaps the ECE averages.

    Input: ``proba`` (n_samples, n_classes), ``y`` class codes (n_samples,).
    """
    bins = reliability_bins(proba, y, n_bins, strategy)
    keep = bins.count > 0
    return bins.confidence[keep], bins.accuracy[keep]


def reliability_diagram(
    curves: dict[str, np.ndarray], y: np.ndarray, n_bins: int = 15, strategy: str = "uniform"
) -> str:
    """Top-label reliability: confidence (max probability) against accuracy, per ECE bin."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    for label, proba in curves.items():
        confidence, accuracy = reliability_points(proba, y, n_bins, strategy)
        ece = expected_calibration_error(proba, y, n_bins, strategy)
        ax.plot(confidence, accuracy, marker="o", label=f"{label} (ECE {ece:.4f})")
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability on the test split")
    ax.legend(loc="upper left")
    return _png(fig)


def risk_coverage_plot(curves: dict[str, np.ndarray], y: np.ndarray) -> str:
    """Selective risk against coverage for each prediction (most confident first)."""
    from ensemblex.metrics.selective import aurc, risk_coverage_curve

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for label, proba in curves.items():
        curve = risk_coverage_curve(proba, y)
        ax.plot(curve.coverage, curve.risk, label=f"{label} (AURC {aurc(proba, y):.4f})")
    ax.axhline(0.05, color="grey", linestyle=":", label="5% risk")
    ax.set_xlabel("coverage (share of samples answered)")
    ax.set_ylabel("risk (error rate of answered samples)")
    ax.set_title("Risk-coverage on the test split")
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def cascade_front_plot(
    front,
    chosen,
    test_front=None,
    test_chosen=None,
    target_accuracy: float | None = None,
    test_full_accuracy: float | None = None,
) -> str:
    """The cascade's accuracy against its share of the full ensemble's cost.

    Parameters
    ----------
    front : list of ensemblex.cascade.OperatingPoint
        The Pareto front on the rows the threshold was chosen on (out-of-fold rows).
    chosen : OperatingPoint
        The chosen threshold on those rows; it need not lie on the front (the choice is the
        cheapest threshold from which every stricter one meets the target).
    test_front, test_chosen : optional
        The same thresholds, and the chosen one, on held-out test rows.
    target_accuracy : float, optional
        The accuracy the choice had to keep on the out-of-fold rows.
    test_full_accuracy : float, optional
        The full ensemble's accuracy on the test rows.
    """
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    ax.plot(
        [p.relative_cost for p in front],
        [p.accuracy for p in front],
        marker=".",
        color="#1f77b4",
        label="Pareto front on OOF rows (thresholds chosen here)",
    )
    ax.scatter(
        [chosen.relative_cost],
        [chosen.accuracy],
        s=70,
        facecolors="none",
        edgecolors="#d62728",
        linewidths=1.8,
        zorder=3,
        label=f"chosen threshold on OOF rows: {chosen.relative_cost:.1%} of the cost",
    )
    if target_accuracy is not None:
        ax.axhline(target_accuracy, color="grey", linestyle=":", label="accuracy target (OOF rows)")
    if test_front:
        points = sorted(test_front, key=lambda p: p.relative_cost)
        ax.plot(
            [p.relative_cost for p in points],
            [p.accuracy for p in points],
            marker=".",
            linestyle="--",
            color="#ff7f0e",
            label="the same thresholds on test rows",
        )
    if test_full_accuracy is not None:
        ax.axhline(
            test_full_accuracy,
            color="#ff7f0e",
            linestyle=":",
            label="full ensemble's accuracy on test rows",
        )
    if test_chosen is not None:
        ax.scatter(
            [test_chosen.relative_cost],
            [test_chosen.accuracy],
            s=90,
            marker="*",
            color="#d62728",
            zorder=4,
            label=f"chosen threshold on test rows: {test_chosen.relative_cost:.1%} of the cost",
        )
        # how far the choice moved from the rows it was made on to new rows
        ax.annotate(
            "",
            xy=(test_chosen.relative_cost, test_chosen.accuracy),
            xytext=(chosen.relative_cost, chosen.accuracy),
            arrowprops={"arrowstyle": "->", "color": "#d62728", "lw": 0.8, "alpha": 0.7},
        )
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=1))
    ax.set_xlabel("cost relative to the full ensemble")
    ax.set_ylabel("accuracy")
    ax.set_title("Early-exit cascade: threshold chosen on OOF rows")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=8, frameon=False)
    return _png(fig)


# What each OOD score (ensemblex.metrics.ood.OOD_SCORES) measures, and its range for k classes
_OOD_AXES = {
    "max_probability": ("1 - max probability of the members' mean", lambda k: 1.0 - 1.0 / k),
    "entropy": ("entropy of the members' mean (nats)", np.log),
    # the members' mean's entropy less their mean entropy: at most the former's maximum
    "mutual_information": ("mutual information: members' disagreement (nats)", np.log),
}


def ood_histograms(
    scores: dict[str, tuple[np.ndarray, np.ndarray]], n_classes: int | None = None
) -> str:
    """One panel per OOD score: its histogram on test rows and on out-of-distribution rows.

    Parameters
    ----------
    scores : dict of str to (ndarray, ndarray)
        Each score's values on the test rows and on the OOD rows.
    n_classes : int, optional
        With it, each known score's x-axis spans the score's whole range (``max_probability``
        plots 1 - max probability: 0 to 1 - 1/k, so 0 to 0.5 for two classes); otherwise
        the values' range.
    """
    from ensemblex.metrics.ood import detection_metrics

    fig, axes = plt.subplots(1, len(scores), figsize=(4.2 * len(scores), 3.8))
    for ax, (name, (s_id, s_ood)) in zip(np.atleast_1d(axes), scores.items()):
        label, upper = _OOD_AXES.get(name, (name, None))
        values = np.r_[s_id, s_ood]
        if n_classes is not None and upper is not None:
            # clip: a score may overshoot its bound by rounding (entropy of a clipped p)
            span = (0.0, max(float(upper(n_classes)), float(values.max())))
        else:
            span = (float(values.min()), float(values.max()))
        bins = np.histogram_bin_edges(values, bins=30, range=span if span[1] > span[0] else None)
        ax.hist(s_id, bins=bins, alpha=0.6, density=True, label="test rows")
        ax.hist(s_ood, bins=bins, alpha=0.6, density=True, label="OOD rows")
        if span[1] > span[0]:
            ax.set_xlim(*span)
        ax.set_title(f"{name} (AUROC {detection_metrics(s_id, s_ood).auroc:.3f})", fontsize=9)
        ax.set_xlabel(label, fontsize=8)
        ax.set_ylabel("density (area 1 per group of rows)", fontsize=8)
        ax.legend(fontsize=8)
    fig.suptitle("Out-of-distribution scores (higher: more likely OOD)")
    fig.tight_layout()
    return _png(fig)
