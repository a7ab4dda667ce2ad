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
from ensemblex.runs import RunFolder
from ensemblex.tasks import encode_labels

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child, td:nth-child(2) { text-align: left; }
tr.chosen { background: #e8f3e8; font-weight: 600; }
figure { margin: 1.5em 0; } figcaption { color: #555; font-size: 0.9em; }
"""


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
    sections = [_leaderboard_table(summary)]
    weights = mixture_weights(model.combiner_)
    chosen = getattr(model.combiner_, "combiner_", model.combiner_)
    if weights is not None:
        title = f"Weights of the chosen combiner ({summary['chosen']})"
        figure = plots.weights_plot(dict(zip(P.members, np.asarray(weights))), title)
        sections.append(_figure(figure, title, "Share of each member in the ensemble."))
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
            f"ensemble ({summary['chosen']})": model.combiner_.predict(test.predictions),
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
        "rows; scores from the members' mean (mutual information: their disagreement)."
    )
    return _figure(plots.ood_histograms(scores), "Out-of-distribution scores", caption)


def _cascade_section(run, weights) -> str:
    """Fit an early-exit cascade on the OOF rows with the members' measured predict costs."""
    from ensemblex.cascade import Cascade

    try:
        cascade = Cascade(costs=run.member_costs(), weights=weights).fit(
            run.oof.predictions, run.oof.y
        )
    except ValueError as exc:
        return f"<p>No cascade: {html.escape(str(exc))}</p>"
    caption = (
        f"Members cheapest first: {', '.join(cascade.order_)}. The chosen threshold keeps "
        "the full ensemble's OOF accuracy within 0.1 point."
    )
    return _figure(
        plots.cascade_front_plot(cascade.front_, cascade.chosen_), "Early-exit cascade", caption
    )


def _leaderboard_table(summary: dict) -> str:
    head = "<tr><th>model</th><th>kind</th><th>CV score</th><th>test score</th><th>fit s</th></tr>"
    body = []
    for r in summary["leaderboard"]:
        cls = ' class="chosen"' if r["kind"] == "combiner (chosen)" else ""
        fit = "" if r.get("fit_seconds") is None else f"{r['fit_seconds']:.2f}"
        body.append(
            f"<tr{cls}><td>{html.escape(str(r['model']))}</td>"
            f"<td>{html.escape(str(r['kind']))}</td>"
            f"<td>{r['cv_score']:.5f}</td><td>{r['test_score']:.5f}</td>"
            f"<td>{fit}</td></tr>"
        )
    note = (
        "Members: out-of-fold score. Combiners: nested cross-validated score (refit inside "
        "each outer fold of the OOF rows). Test: the held-out split, never used to fit."
    )
    return f"<h2>Leaderboard</h2><p>{note}</p><table>{head}{''.join(body)}</table>"


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
