"""``ensemblex blend``: combine members' predictions that users already have."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import typer
from rich.table import Table as RichTable
from rich.text import Text

from ensemblex.cli.app import TaskChoice, app, console, example_path, fail
from ensemblex.cli.display import CandidateProgress
from ensemblex.report.numbers import format_number


@app.command()
def blend(
    oof: Path | None = typer.Argument(
        None,
        help="Out-of-fold predictions (CSV or Parquet, wide layout) with the target. "
        "Omitted: the bundled churn example.",
    ),
    target: str | None = typer.Option(None, "--target", help="Target column of OOF."),
    test: list[Path] | None = typer.Option(
        None,
        "--test",
        help="Test predictions to combine. Give it once per fold model (or one table with a "
        "'fold' column) to combine each fold's predictions, then average.",
    ),
    id_col: str | None = typer.Option(None, "--id", help="Id column carried to the output."),
    task: TaskChoice = typer.Option(TaskChoice.auto, "--task"),
    method: str = typer.Option(
        "auto",
        "--method",
        help="Combiner: auto picks by nested cross-validation; or a name: mean, best, "
        "weighted, greedy, pool, stack, stack_regularized, stack_spline; with --features: "
        "ola, lca, knora_e, knora_u, des_p, meta_des, fuzzy_routing, gate, stack_features, "
        "stack_features_lgbm; label-free: knop, dawid_skene, ds_proba, sml, consensus.",
    ),
    features: Path | None = typer.Option(
        None,
        "--features",
        help="The rows' original features (CSV or Parquet with the --id column), for "
        "combiners that read them; joined to the OOF and test rows by id.",
    ),
    unsupervised: bool = typer.Option(
        False,
        "--unsupervised",
        help="Fit a label-free combiner without the OOF target (no --target needed).",
    ),
    labels: Path | None = typer.Option(
        None,
        "--labels",
        help="With --unsupervised: a table of --id and a label for a few OOF rows.",
    ),
    metric: str = typer.Option(
        "auto",
        "--metric",
        help="rmse, mae, r2, log_loss, accuracy, balanced_accuracy, "
        "roc_auc or brier; auto is rmse or log_loss.",
    ),
    positive: str | None = typer.Option(
        None, "--positive", help="Positive class of a binary task."
    ),
    folds: int = typer.Option(5, "--folds", min=2, help="Outer folds of the nested CV."),
    time_limit: float | None = typer.Option(
        None,
        "--time-limit",
        min=0.001,
        help="Seconds for the nested CV of --method auto; candidates not started by then "
        "are skipped.",
    ),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(Path("ensemblex-out"), "--out", help="Output folder."),
) -> None:
    """Combine members' out-of-fold predictions; predict the TEST rows.

    Writes OUT/predictions.csv and OUT/blend.json, and prints the nested-CV table.
    """
    from ensemblex.blending import blend_tables, write_blend

    if oof is None:
        oof = example_path("churn_oof.csv")
        target = target or "Exited"
        test = test or [example_path("churn_test.csv")]
        id_col = id_col or "row"
        console.print(f"No OOF table given: blending the bundled churn example ({oof.parent}).")
    try:
        # a label-free fit has no candidates to show (and takes a second or two)
        bar = nullcontext() if unsupervised else CandidateProgress()
        with bar as progress:
            summary, predictions = blend_tables(
                oof,
                target,
                test=test,
                id_col=id_col,
                task=task.value,
                method=method,
                metric=metric,
                positive=positive,
                folds=folds,
                seed=seed,
                time_limit=time_limit,
                progress=progress,
                features=features,
                unsupervised=unsupervised,
                labels=labels,
            )
        write_blend(out, predictions, summary)
    except (ValueError, TypeError, OSError) as exc:
        fail(str(exc))
    _print_summary(summary, out)


def _print_summary(summary: dict, out: Path) -> None:
    if summary.get("unsupervised"):
        _print_unsupervised(summary, out)
        return
    table = RichTable(
        title=f"Nested {summary['folds']}-fold CV on {summary['n_oof_rows']} "
        f"OOF rows: {summary['metric']} "
        f"({'higher' if summary['greater_is_better'] else 'lower'} is better)"
    )
    table.add_column("combiner")
    table.add_column(summary["metric"], justify="right")
    table.add_column("seconds", justify="right")
    for name, score in summary["nested_cv_scores"].items():
        mark = (" <- chosen", "bold green") if name == summary["method"] else ""
        seconds = summary["nested_cv_seconds"][name]
        table.add_row(Text.assemble(name, mark), format_number(score), format_number(seconds, 3))
    console.print(table)
    console.print(f"best single member: {summary['best_single_member']}")
    weights = summary.get("weights")
    if weights:
        top = sorted(((w, m) for m, w in weights.items() if w > 0), reverse=True)[:8]
        console.print("weights: " + ", ".join(f"{m} {w:.3f}" for w, m in top))
    if summary.get("ensemble_weights") and summary["method"] == "ensemble":
        parts = sorted(summary["ensemble_weights"].items(), key=lambda kv: -kv[1])
        console.print("ensemble of combiners: " + ", ".join(f"{n} {w:.2f}" for n, w in parts))
    if summary.get("dropped_members"):
        console.print(f"dropped as redundant: {', '.join(summary['dropped_members'])}")
    if "test_score" in summary:
        console.print(
            f"test {summary['metric']}: ensemble {format_number(summary['test_score'])}, "
            f"best single member {format_number(summary['best_single_test_score'])}"
        )
    console.print(
        f"wrote {out / 'predictions.csv'} and {out / 'blend.json'} ({summary['fit_seconds']:.1f}s)"
    )


def _print_unsupervised(summary: dict, out: Path) -> None:
    labels = summary["n_labels"]
    console.print(
        f"label-free combiner {summary['method']} fitted on {summary['n_oof_rows']} OOF rows "
        f"with {labels} label{'s' if labels != 1 else ''}"
    )
    weights = summary.get("weights")
    if weights:
        top = sorted(((w, m) for m, w in weights.items() if w > 0), reverse=True)[:8]
        console.print("weights: " + ", ".join(f"{m} {w:.3f}" for w, m in top))
    if "test_score" in summary:
        scores = summary["member_test_scores"]
        better = max if summary["greater_is_better"] else min
        best = better(scores, key=scores.get)
        console.print(
            f"test {summary['metric']}: combiner {format_number(summary['test_score'])}, mean "
            f"{format_number(summary['mean_test_score'])}, best member in hindsight {best} "
            f"{format_number(scores[best])}"
        )
    console.print(
        f"wrote {out / 'predictions.csv'} and {out / 'blend.json'} ({summary['fit_seconds']:.1f}s)"
    )
