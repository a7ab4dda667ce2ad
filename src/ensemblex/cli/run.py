"""``ensemblex run`` (the main job) and ``ensemblex report``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from ensemblex.cli.app import TaskChoice, app, console, example_path, fail
from ensemblex.cli.display import FoldProgress, print_leaderboard


class Zoo(str, Enum):
    default = "default"
    fast = "fast"
    deep = "deep"
    none = "none"


class Backend(str, Enum):
    local = "local"
    ray = "ray"


@app.command()
def run(
    data: Path | None = typer.Argument(
        None, help="Training table (CSV or Parquet). Omitted: the bundled churn table."
    ),
    target: str | None = typer.Option(None, "--target", help="Target column."),
    task: TaskChoice = typer.Option(TaskChoice.auto, "--task"),
    zoo: Zoo = typer.Option(Zoo.default, "--zoo", help="Zoo to cross-fit (none: --member only)."),
    member: list[str] = typer.Option(
        [], "--member", help="Add a member NAME=FAMILY[:key=value,...], e.g. words=tfidf_logistic."
    ),
    folds: int = typer.Option(5, "--folds", min=2),
    test_size: float = typer.Option(0.2, "--test-size", min=0.05, max=0.5),
    backend: Backend = typer.Option(Backend.local, "--backend"),
    ray_address: str | None = typer.Option(None, "--ray-address"),
    jobs: int | None = typer.Option(None, "--jobs", min=1, help="Parallel fits (default: cores)."),
    seed: int = typer.Option(0, "--seed"),
    refit_full: bool = typer.Option(
        False,
        "--refit-full",
        help="Deploy each used member refit once on all training rows instead of its fold "
        "models (smaller, faster; the refit models are not themselves validated).",
    ),
    views: Path | None = typer.Option(
        None,
        "--views",
        help='Multi-view members: a JSON file {"view name": [columns], ...}; the zoo is '
        "fitted once per view and all members are combined.",
    ),
    edges: Path | None = typer.Option(
        None,
        "--edges",
        help="Graph edges (CSV/Parquet with source,target columns of node ids): the rows are "
        "nodes and the zoo is the graph zoo (GCN, GAT, GraphSAGE, APPNP, SGC, MLP, label "
        "propagation); a `split` column, when present, is the predefined split.",
    ),
    node_column: str = typer.Option("node", "--node-column", help="Node ids (with --edges)."),
    split_column: str | None = typer.Option(
        None,
        "--split-column",
        help="A predefined split instead of --test-size/--folds: members fit the `train` "
        "rows, the combiner their predictions of the `val` rows, `test` rows are scored; "
        "other rows are not fitted on.",
    ),
    out: Path = typer.Option(Path("ensemblex-run"), "--out", help="Run folder."),
) -> None:
    """Cross-fit a zoo, choose a combiner by nested CV, and write the run folder.

    OUT gets the saved ensemble (model/), oof.parquet and test.parquet (the wide layout
    `ensemblex blend` reads), leaderboard.json and report.html. Rerunning the same command
    resumes.
    """
    from ensemblex.experiment import run_experiment
    from ensemblex.members import member_from_spec
    from ensemblex.members.zoo import table_zoo
    from ensemblex.tables import read_data

    if data is None:
        data, target = example_path("churn_modelling.csv"), target or "Exited"
        console.print(f"No DATA given: running on the bundled churn table ({data}).")
    try:
        frame = read_data(data)
        if target is None:
            raise ValueError(f"{data}: --target is required")
        extra = [member_from_spec(spec) for spec in member]
        view_columns = None if views is None else _read_views(views)
        if zoo is Zoo.none and not extra:
            raise ValueError("--zoo none needs at least one --member")

        graph = None
        if edges is not None:
            from ensemblex.graphs import Graph

            if split_column is None and "split" in frame.columns:
                split_column = "split"
            exclude = [target] + ([split_column] if split_column else [])
            graph = Graph.from_frames(
                frame,
                read_data(edges),
                node_column=node_column,
                exclude=exclude,
                nodes_name=str(data),
                edges_name=str(edges),
            )
            console.print(
                f"graph: {graph.n_nodes} nodes, {graph.n_edges // 2} edges, "
                f"{graph.n_features} node features"
            )

        def members(task_: str):
            if zoo is Zoo.none:
                return extra
            features = frame.drop(columns=[target] + ([split_column] if split_column else []))
            if graph is None:
                from ensemblex.members.text import text_columns

                texts = text_columns(features)
                if texts:
                    console.print(f"text columns, read by the text members: {texts}")
            return (
                table_zoo(zoo.value, task_, features, seed, graph=graph, node_column=node_column)
                + extra
            )

        with FoldProgress() as (on_task, progress):
            summary = run_experiment(
                frame,
                target,
                out,
                members=members,
                task=task.value,
                folds=folds,
                test_size=test_size,
                backend=backend.value,
                ray_address=ray_address,
                n_jobs=jobs,
                seed=seed,
                refit_full=refit_full,
                views=view_columns,
                split_column=split_column,
                source=str(data),
                zoo_label=zoo.value + "".join(f" +{spec}" for spec in member),
                on_task=on_task,
                progress=progress,
            )
    except (ValueError, TypeError, OSError, ImportError) as exc:
        fail(str(exc))
    print_leaderboard(summary)
    print_deployed(summary)
    if summary.get("view_weights"):
        parts = sorted(summary["view_weights"].items(), key=lambda kv: -kv[1])
        console.print("weight per view: " + ", ".join(f"{v} {w:.3f}" for v, w in parts))
    console.print(
        f"wrote {out}/: model/, oof.parquet, test.parquet, test_folds.parquet, "
        "test_output.parquet, leaderboard.json, report.html "
        f"({summary['seconds']:.0f}s)"
    )


def _read_views(path: Path) -> dict:
    """The views file: a JSON object of view names to lists of column names."""
    import json

    try:
        views = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the views file ({exc.strerror})") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    if not isinstance(views, dict):
        raise ValueError(f'{path}: expected {{"view name": [columns], ...}}, however: {views!r}')
    return views


def print_deployed(summary: dict) -> None:
    """One line on what the saved model runs, and its test score beside the fold models'."""
    deployed = summary.get("deployed")
    if not deployed:
        return
    chosen = next((r for r in summary["leaderboard"] if r["kind"] == "combiner (chosen)"), None)
    how = "refit on all rows" if deployed["refit_full"] else "fold models"
    line = (
        f"deployed: {len(deployed['members'])} members as {how} ({deployed['models']} models"
        + (
            f"; left out, unused by the combiner: {', '.join(deployed['left_out'])}"
            if deployed["left_out"]
            else ""
        )
        + f"), test {summary['metric']} {deployed['test_score']:.5g}"
    )
    if deployed["refit_full"] and chosen is not None and chosen.get("test_score") is not None:
        line += f" (fold models: {chosen['test_score']:.5g})"
    if "test_accuracy" in deployed:
        line += f", accuracy {deployed['test_accuracy']:.4f}"
    console.print(line)


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A run folder written by `ensemblex run`."),
    ood: Path | None = typer.Option(
        None, "--ood", help="Out-of-distribution rows (the training columns) to compare with."
    ),
):
    """Rebuild RUN_DIR/report.html: one self-contained page (leaderboard and plots)."""
    from ensemblex.report import build_report
    from ensemblex.runs import RunFolder
    from ensemblex.tables import read_data

    try:
        ood_rows = None
        if ood is not None:
            target = RunFolder(run_dir).summary["target"]
            ood_rows = read_data(ood).drop(columns=[target], errors="ignore")
        path = build_report(run_dir, ood_rows)
    except (ValueError, TypeError, OSError) as exc:
        fail(str(exc))
    console.print(f"wrote {path}")
