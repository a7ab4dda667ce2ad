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
from ensemblex.labels import NESTED_CV, REFIT_FULL
from ensemblex.report.numbers import format_ms_per_1k_rows, format_number


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
        if label.startswith((NESTED_CV, REFIT_FULL)):
            text = label
        elif label == "resumed":
            text = "cross-fitting (resumed)"
        else:
            text = f"cross-fitting {label}"
        self.bar.update(self.job, completed=done, total=total, description=text)

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)


def number_column(table: RichTable, header: str) -> None:
    """Add a right-aligned column of numbers that is never cut: it keeps its full width when
    the terminal is narrow, and the text columns (names) wrap instead."""
    table.add_column(header, justify="right", no_wrap=True)


def text_column(table: RichTable, header: str, max_width: int | None = None) -> None:
    """Add a column of names that folds onto more lines when the terminal is narrow (a name
    stays whole, across lines, rather than losing its end)."""
    table.add_column(header, overflow="fold", min_width=4, max_width=max_width)


def _one_line_width(rows: list[tuple[str, ...]], headers: tuple[str, ...]) -> int:
    """Width of a table whose every cell fits on one line: cells, padding and borders."""
    widths = [max(len(text) for text in column) for column in zip(headers, *rows)]
    return sum(widths) + 3 * len(widths) + 1


def print_leaderboard(summary: dict) -> None:
    """Print the leaderboard of a run as a terminal table.

    Scores keep 5 significant digits (an RMSE of 27031.12 shows as 27031, a log-loss as
    0.33242), fit seconds and predict milliseconds 3; at 80 columns every number is whole
    and long model names wrap.

    Parameters
    ----------
    summary : dict
        A run's ``leaderboard.json``: ``metric``, ``greater_is_better`` and ``leaderboard``
        rows (``model``, ``kind``, ``cv_score``, ``test_score``, ``fit_seconds``,
        ``predict_seconds_per_row``).
    """
    headers = ("model", "kind", "cv", "test", "fit s", "ms/1k rows")
    rows = [
        (
            row["model"],
            row["kind"],
            format_number(row["cv_score"]),
            format_number(row.get("test_score")),
            format_number(row.get("fit_seconds"), 3),
            format_ms_per_1k_rows(row.get("predict_seconds_per_row")),
        )
        for row in summary["leaderboard"]
    ]
    table = RichTable(
        title=f"Leaderboard ({summary['metric']}, "
        f"{'higher' if summary['greater_is_better'] else 'lower'} is better; "
        "members: OOF score, combiners: nested-CV score)"
    )
    # When the table does not fit, "combiner (chosen)" breaks after "combiner": otherwise
    # rich narrows kind and model alike, and long model names would break instead.
    too_wide = _one_line_width(rows, headers) > console.width
    text_column(table, "model")
    text_column(table, "kind", max_width=len("combiner") if too_wide else None)
    # Short headers: a column of numbers is as wide as its header, and these must fit in 80
    for header in headers[2:]:
        number_column(table, header)
    for row, cells in zip(summary["leaderboard"], rows):
        table.add_row(*cells, style="bold" if row["kind"] == "combiner (chosen)" else None)
    console.print(table)
    console.print("ms/1k rows: members' predict time, milliseconds per 1,000 rows")
