"""Report figures, drawn with matplotlib and returned as base64 PNG for inline embedding."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")  # headless: no display is needed to draw the report
import matplotlib.pyplot as plt
import numpy as np

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
    corr = correlation_matrix(P)
    m = P.n_members
    diversity = 1.0 - (corr.sum(axis=1) - 1.0) / max(m - 1, 1)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(diversity, [scores[name] for name in P.members], color="#3b75af")
    for x, name in zip(diversity, P.members):
        ax.annotate(name, (x, scores[name]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("diversity: 1 - mean correlation with the other members")
    ax.set_ylabel(f"OOF {metric}")
    ax.set_title("Member score vs diversity")
    return _png(fig)


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


def cascade_front_plot(front, chosen) -> str:
    """The cascade's accuracy against its share of the full ensemble's cost."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.plot(
        [p.relative_cost for p in front],
        [p.accuracy for p in front],
        marker=".",
        label="Pareto front (OOF rows)",
    )
    ax.scatter(
        [chosen.relative_cost],
        [chosen.accuracy],
        color="#d62728",
        zorder=3,
        label=f"chosen: {chosen.relative_cost:.0%} of the cost",
    )
    ax.set_xlabel("cost relative to the full ensemble")
    ax.set_ylabel("accuracy")
    ax.set_title("Early-exit cascade")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def ood_histograms(scores: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    """One panel per OOD score: its histogram on test rows and on out-of-distribution rows."""
    from ensemblex.metrics.ood import detection_metrics

    fig, axes = plt.subplots(1, len(scores), figsize=(4.2 * len(scores), 3.6))
    for ax, (name, (s_id, s_ood)) in zip(np.atleast_1d(axes), scores.items()):
        bins = np.histogram_bin_edges(np.r_[s_id, s_ood], bins=30)
        ax.hist(s_id, bins=bins, alpha=0.6, density=True, label="test rows")
        ax.hist(s_ood, bins=bins, alpha=0.6, density=True, label="OOD rows")
        ax.set_title(f"{name} (AUROC {detection_metrics(s_id, s_ood).auroc:.3f})", fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle("Out-of-distribution scores (higher: more likely OOD)")
    return _png(fig)
