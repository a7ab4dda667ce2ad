"""One self-contained HTML report per run folder: tables and inline PNG plots, no network."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from ensemblex.combiners.base import mixture_weights
from ensemblex.combiners.layered import CombinerEnsemble
from ensemblex.combiners.pooling import Pooling
from ensemblex.files import write_text_atomic
from ensemblex.report import plots
from ensemblex.report.numbers import format_ms_per_1k_rows, format_number
from ensemblex.runs import RunFolder
from ensemblex.tasks import encode_labels

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child, td:nth-child(2) { text-align: left; }
tr.chosen { background: #e8f3e8; font-weight: 600; }
table.facts th, table.facts td { text-align: left; vertical-align: top; }
figure { margin: 1.5em 0; } figcaption { color: #555; font-size: 0.9em; }
"""


def _test_output(run: RunFolder, model) -> np.ndarray:
    """The saved model's output on the test rows, as the run kept it (older runs: the
    combiner on the members' mean test predictions)."""
    kept = run.test_output
    return kept if kept is not None else model.combiner_.predict(run.test.predictions)


def build_report(run_dir: Path, ood_rows=None) -> Path:
    """Write ``run_dir/report.html`` from the run's files; return its path.

    ``ood_rows``: an optional DataFrame of out-of-distribution inputs (the training columns);
    the report then shows the ensemble's OOD-score histograms on test rows against them.
    """
    run = RunFolder(run_dir)
    summary, oof, test = run.summary, run.oof, run.test
    P = oof.predictions
    model = run.load_model()
    rows = summary["leaderboard"]
    member_scores = {r["model"]: r["cv_score"] for r in rows if r["kind"] == "member"}
    sections = [_data_section(summary), _leaderboard_table(summary)]
    weights = mixture_weights(model.combiner_)
    chosen = getattr(model.combiner_, "combiner_", model.combiner_)
    if weights is not None:
        title = f"Weights of the chosen combiner ({summary['chosen']})"
        figure = plots.weights_plot(dict(zip(P.members, np.asarray(weights))), title)
        sections.append(_figure(figure, title, "Share of each member in the ensemble."))
        if summary.get("view_weights"):
            title = "Weight per view"
            figure = plots.weights_plot(summary["view_weights"], title)
            caption = "The chosen combiner's weights summed over each view's members."
            sections.append(_figure(figure, title, caption))
    elif isinstance(chosen, Pooling):
        title = f"Weights of the log-linear pool ({summary['chosen']})"
        figure = plots.weights_plot(dict(zip(P.members, chosen.weights_)), title)
        sections.append(
            _figure(
                figure,
                title,
                "Exponent of each member's probabilities in the pool; their sum "
                f"({chosen.weights_.sum():.2f}) sharpens (above 1) or softens the ensemble.",
            )
        )
    elif isinstance(chosen, CombinerEnsemble):
        title = "Weights of the ensemble of combiners"
        weights_of = dict(zip(chosen.combiners_, chosen.combiner_weights_))
        sections.append(
            _figure(
                plots.weights_plot(weights_of, title),
                title,
                "Share of each combiner (refit on all OOF rows) in the ensemble, chosen by "
                "bagged greedy selection over their nested cross-validated predictions.",
            )
        )
    else:
        kept = getattr(chosen, "kept_members_", list(P.members))
        sections.append(
            f"<p>The chosen combiner ({html.escape(str(summary['chosen']))}) is a "
            f"meta-model over {len(kept)} members; it has no member weights.</p>"
        )
    sections.append(
        _figure(
            plots.correlation_heatmap(P),
            "Member correlation",
            "Pearson correlation of the members' out-of-fold predictions.",
        )
    )
    sections.append(
        _figure(
            plots.score_vs_diversity(P, member_scores, summary["metric"]),
            "Member score vs diversity",
            "Each member's OOF score against how much it differs from the rest.",
        )
    )
    if P.task != "regression":
        y = encode_labels(test.y, P.classes)
        best = min(
            member_scores,
            key=lambda m: member_scores[m] * (-1 if summary["greater_is_better"] else 1),
        )
        curves = {
            f"ensemble ({summary['chosen']})": _test_output(run, model),
            f"best member ({best})": test.predictions.member(best),
        }
        sections.append(
            _figure(
                plots.reliability_diagram(curves, y),
                "Reliability diagram",
                "Confidence against accuracy on the held-out test rows.",
            )
        )
        sections.append(
            _figure(
                plots.risk_coverage_plot(curves, y),
                "Risk-coverage",
                "Error rate when answering only the most confident samples.",
            )
        )
        sections.append(_cascade_section(run, weights))
        if ood_rows is not None:
            sections.append(_ood_section(test.predictions, model.member_predictions(ood_rows)))
    out = run.report_path
    write_text_atomic(_page(summary, "\n".join(sections)), out)
    return out


def _ood_section(P_test, P_ood) -> str:
    from ensemblex.metrics.ood import OOD_SCORES

    scores = {
        name: (score(P_test.values), score(P_ood.values)) for name, score in OOD_SCORES.items()
    }
    caption = (
        f"{P_ood.n_samples} out-of-distribution rows against {P_test.n_samples} test "
        "rows; scores from the members' mean (mutual information: their disagreement). "
        "max_probability is scored as 1 - the top class's probability, so higher means "
        f"less confident; with {len(P_test.classes)} classes it lies between 0 and "
        f"{1 - 1 / len(P_test.classes):.3g}."
    )
    figure = plots.ood_histograms(scores, n_classes=len(P_test.classes))
    return _figure(figure, "Out-of-distribution scores", caption)


def _cascade_section(run, weights) -> str:
    """Fit an early-exit cascade on the OOF rows with the members' measured predict costs,
    and show where its thresholds land on the held-out test rows."""
    from ensemblex.cascade import Cascade

    try:
        cascade = Cascade(costs=run.member_costs(), weights=weights).fit(
            run.oof.predictions, run.oof.y
        )
    except ValueError as exc:
        return f"<p>No cascade: {html.escape(str(exc))}</p>"
    test = run.test
    # The OOF front's thresholds and the chosen one, each applied to the test rows: the
    # plot then shows what the choice made on OOF rows gives on rows it never saw.
    thresholds = [p.threshold for p in cascade.front_] + [cascade.chosen_.threshold]
    on_test = operating_points(cascade, test.predictions, test.y, thresholds)
    chosen_test = on_test[-1]
    full_test = operating_points(cascade, test.predictions, test.y, [np.inf])[0]
    target = cascade.full_accuracy_ - cascade.epsilon
    figure = plots.cascade_front_plot(
        cascade.front_,
        cascade.chosen_,
        test_front=on_test[:-1],
        test_chosen=chosen_test,
        target_accuracy=target,
        test_full_accuracy=full_test.accuracy,
    )
    caption = (
        f"Members cheapest first: {', '.join(cascade.order_)}. The threshold is chosen on the "
        "out-of-fold rows: the cheapest from which every stricter threshold keeps the full "
        f"ensemble's OOF accuracy within {cascade.epsilon * 100:.1f} point (at least "
        f"{target:.4f}), so it may lie below the OOF front when a cheaper threshold passes "
        "only by a dip. The same thresholds applied to the held-out test rows (dashed) show "
        f"what to expect on new rows: the chosen one costs {chosen_test.relative_cost:.1%} "
        f"of the full ensemble with test accuracy {chosen_test.accuracy:.4f} (full ensemble: "
        f"{full_test.accuracy:.4f})."
    )
    return _figure(figure, "Early-exit cascade", caption)


def operating_points(cascade, P, y, thresholds) -> list:
    """The operating points of a fitted cascade at ``thresholds`` on other rows (``P``, ``y``):
    cost relative to the full ensemble, and accuracy.

    Parameters
    ----------
    cascade : ensemblex.cascade.Cascade
        Fitted (on the OOF rows).
    P : Predictions
        The same members on the rows to evaluate, e.g. the held-out test rows.
    y : array-like of shape (n_samples,)
        Their labels.
    thresholds : sequence of float
        Exit thresholds (``inf``: every row runs the full ensemble).

    Returns
    -------
    list of ensemblex.cascade.OperatingPoint
        One per threshold, in the given order.
    """
    import copy

    from ensemblex.cascade import OperatingPoint

    codes = encode_labels(np.asarray(y), cascade.classes_)
    full_cost = float(cascade.stage_costs_[-1])
    points = []
    for threshold in thresholds:
        at = copy.copy(cascade)  # the fitted cascade, exiting at this threshold instead
        at.threshold_ = float(threshold)
        output = at.predict(P)
        cost = float(output.cost.mean())
        accuracy = float(np.mean(output.proba.argmax(axis=1) == codes))
        points.append(OperatingPoint(float(threshold), cost, cost / full_cost, accuracy))
    return points


def _leaderboard_table(summary: dict) -> str:
    head = "".join(
        f"<th>{name}</th>"
        for name in ("model", "kind", "CV score", "test score", "fit s", "predict ms / 1k rows")
    )
    body = []
    for r in summary["leaderboard"]:
        cls = ' class="chosen"' if r["kind"] == "combiner (chosen)" else ""
        # the same significant digits as the terminal's leaderboard (cli/display.py)
        numbers = (
            format_number(r["cv_score"]),
            format_number(r.get("test_score")),
            format_number(r.get("fit_seconds"), 3),
            format_ms_per_1k_rows(r.get("predict_seconds_per_row")),
        )
        body.append(
            f"<tr{cls}><td>{html.escape(str(r['model']))}</td>"
            f"<td>{html.escape(str(r['kind']))}</td>"
            + "".join(f"<td>{html.escape(n)}</td>" for n in numbers)
            + "</tr>"
        )
    note = (
        "Members: out-of-fold score. Combiners: nested cross-validated score (refit inside "
        "each outer fold of the OOF rows). Test: the held-out split, never used to fit. "
        "Predict time: each member's measured time (all its fold models) in milliseconds "
        "per 1,000 rows."
    )
    return f"<h2>Leaderboard</h2><p>{note}</p><table><tr>{head}</tr>{''.join(body)}</table>"


def _data_section(summary: dict) -> str:
    """What the run was trained on: the table, target, task, rows and columns.

    Read leniently: these entries are not checked when the run folder is read (an older or
    edited ``leaderboard.json`` may lack them), so a missing or odd entry is left out, not
    an error. Every value is escaped: file and column names are the user's.
    """
    rows = []

    def add(label: str, value: str) -> None:
        rows.append(f"<tr><th>{html.escape(label)}</th><td>{value}</td></tr>")

    def names(value) -> list[str] | None:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return value if ok else None

    if summary.get("data") is not None:
        add("source table", html.escape(str(summary["data"])))
    add("target", html.escape(str(summary["target"])))
    add("task", html.escape(str(summary["task"])))
    counts = summary.get("rows")
    if isinstance(counts, dict) and all(_is_count(counts.get(k)) for k in ("train", "test")):
        add("rows", f"{counts['train']:,} train, {counts['test']:,} held-out test")
    columns = summary.get("columns") if isinstance(summary.get("columns"), dict) else {}
    for kind in ("numeric", "categorical"):
        listed = names(columns.get(kind))
        if listed is not None:
            add(f"{kind} columns ({len(listed)})", html.escape(", ".join(listed)) or "none")
    dropped = names(summary.get("dropped_columns"))
    if dropped is not None:
        add(
            f"dropped ID-like columns ({len(dropped)})",
            html.escape(", ".join(dropped)) or "none",
        )
    return f'<h2>Data</h2><table class="facts">{"".join(rows)}</table>'


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _figure(png_b64: str, title: str, caption: str) -> str:
    return (
        f'<figure><h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" '
        f'src="data:image/png;base64,{png_b64}"><figcaption>{html.escape(caption)}'
        "</figcaption></figure>"
    )


_FACTS = ("target", "task", "zoo", "folds", "seed", "metric", "chosen")


def _page(summary: dict, body: str) -> str:
    direction = "higher" if summary["greater_is_better"] else "lower"
    title = f"ensemblex run: {Path(str(summary.get('data', ''))).name}"
    e = {k: html.escape(str(summary.get(k))) for k in _FACTS}
    facts = (
        f"Target <b>{e['target']}</b> ({e['task']}), zoo <b>{e['zoo']}</b>, {e['folds']} folds, "
        f"seed {e['seed']}; metric <b>{e['metric']}</b> ({direction} is better); chosen "
        f"combiner <b>{e['chosen']}</b>."
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{facts}</p>{body}</body></html>"
    )
