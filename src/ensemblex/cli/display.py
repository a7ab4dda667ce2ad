"""What the commands print: progress bars and tables (rich)."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table as RichTable

from ensemblex.cli.app import console
from ensemblex.combiners.auto import NESTED_CV


def _progress_bar(*extra_columns) -> Progress:
    """The commands' progress bar: description, bar, done/total, elapsed, then ``extra_columns``."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        *extra_columns,
        console=console,
    )


class CandidateProgress:
    """A rich progress bar over the combiner candidates of a nested cross-validation."""

    def __enter__(self):
        self.bar = _progress_bar()
        self.bar.__enter__()
        self.job = self.bar.add_task(NESTED_CV, total=None)
        return self.progress

    def progress(self, name: str, done: int, total: int) -> None:
        self.bar.update(
            self.job, completed=done, total=total + 1, description=f"{NESTED_CV}: {name}"
        )

    def __exit__(self, *exc):
        if exc[0] is None:
            total = self.bar.tasks[0].total
            self.bar.update(self.job, completed=total, description=f"{NESTED_CV}: done")
        return self.bar.__exit__(*exc)


class FoldProgress:
    """A rich progress bar over (member, fold) pairs, with the task printed first."""

    def __enter__(self):
        self.bar = _progress_bar(TimeRemainingColumn())
        self.bar.__enter__()
        self.job = self.bar.add_task("cross-fitting members x folds", total=None)
        return self.on_task, self.progress

    def on_task(self, task: str) -> None:
        console.print(f"task: {task} (--task overrides)")

    def progress(self, label: str, done: int, total: int) -> None:
        if label.startswith(NESTED_CV):
            text = label
        elif label == "resumed":
            text = "cross-fitting (resumed)"
        else:
            text = f"cross-fitting {label}"
        self.bar.update(self.job, completed=done, total=total, description=text)

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)


def print_leaderboard(summary: dict) -> None:
    """The leaderboard of a run as a terminal table."""
    table = RichTable(
        title=f"Leaderboard ({summary['metric']}, "
        f"{'higher' if summary['greater_is_better'] else 'lower'} is better; "
        "members: OOF score, combiners: nested-CV score)"
    )
    for col in ("model", "kind", "cv score", "test score", "fit s", "predict ms/1k rows"):
        table.add_column(col, justify="left" if col in ("model", "kind") else "right")
    for row in summary["leaderboard"]:
        per_row = row.get("predict_seconds_per_row")
        table.add_row(
            row["model"],
            row["kind"],
            f"{row['cv_score']:.5f}",
            f"{row['test_score']:.5f}",
            "" if row.get("fit_seconds") is None else f"{row['fit_seconds']:.2f}",
            "" if per_row is None else f"{per_row * 1e6:.1f}",
        )
    console.print(table)
