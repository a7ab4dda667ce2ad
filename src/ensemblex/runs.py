"""The run folder written by ``ensemblex run``: the one place that knows its file names.

Layout::

    model/             the saved ensemble (:meth:`ensemblex.ensemble.Ensemble.save`)
    oof.parquet        members' out-of-fold predictions with the target (``blend``'s layout)
    test.parquet       members' predictions on the held-out test rows, with the target
    test_folds.parquet each fold model's predictions on the test rows (a ``fold`` column)
    test_output.parquet the saved model's combined output on the test rows
    leaderboard.json   the run's settings, metric, chosen combiner and leaderboard
    report.html        the report (:func:`ensemblex.report.build_report`)
    work/              the resumable store of finished folds (:class:`ensemblex.store.RunStore`)

The CLI, the report and the cascade read a run through :class:`RunFolder`.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ensemblex.files import write_json_atomic
from ensemblex.predictions import Predictions
from ensemblex.tables import Table, read_table, to_frame, write_frame
from ensemblex.tasks import TASKS

MODEL = "model"
OOF = "oof.parquet"
TEST = "test.parquet"
TEST_FOLDS = "test_folds.parquet"
TEST_OUTPUT = "test_output.parquet"
FOLD = "fold"
LEADERBOARD = "leaderboard.json"
REPORT = "report.html"
WORK = "work"
LOCK = ".lock"
_SUMMARY_TYPES = {
    "target": str,
    "task": str,
    "metric": str,
    "greater_is_better": bool,
    "chosen": str,
    "leaderboard": list,
}
_ROW_KINDS = ("member", "combiner", "combiner (chosen)")
_ROW_NUMBERS = (
    "cv_score",
    "test_score",
    "test_accuracy",
    "fit_seconds",
    "predict_seconds_per_row",
)


class RunFolder:
    """A run folder: paths, and its parts read on first use.

    Parameters
    ----------
    root : path
        The folder (``--out`` of ``ensemblex run``).
    """

    def __init__(self, root):
        self.root = Path(root)

    # ------------------------------------------------------------ paths
    @property
    def model_dir(self) -> Path:
        return self.root / MODEL

    @property
    def work_dir(self) -> Path:
        return self.root / WORK

    @property
    def report_path(self) -> Path:
        return self.root / REPORT

    @contextmanager
    def lock(self):
        """Hold the folder's lock file (with this process's id) while writing it.

        A second writer is refused with a message naming the holder; a lock left by a process
        that no longer runs (killed) is taken over.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / LOCK
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                break
            except FileExistsError:
                holder = _lock_holder(path)
                if holder is not None and holder != os.getpid() and _alive(holder):
                    raise ValueError(
                        f"{self.root}: another ensemblex process (pid {holder}) is writing "
                        "this run folder; wait for it or choose another --out"
                    ) from None
                path.unlink(missing_ok=True)  # stale: its process is gone
        else:
            raise ValueError(f"{self.root}: cannot take the lock {path}")
        try:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            self._remove_leftovers()
            yield self
        finally:
            path.unlink(missing_ok=True)

    def _remove_leftovers(self) -> None:
        """Temporary files and folders of a writer that was killed (``.name.*.tmp``/``.old``);
        only called with the lock held, so no live writer owns them."""
        for path in self.root.glob(".*"):
            if path.name.endswith((".tmp", ".old")):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)

    def is_run(self) -> bool:
        """Whether the folder holds a finished run (its leaderboard is written last)."""
        return (self.root / LEADERBOARD).is_file()

    # ------------------------------------------------------------ reading
    @cached_property
    def summary(self) -> dict:
        """``leaderboard.json``: settings, metric, chosen combiner, leaderboard rows."""
        file = self.root / LEADERBOARD
        if not file.is_file():
            raise ValueError(
                f"{self.root}: no {LEADERBOARD}; not a folder written by `ensemblex run`"
            )
        try:
            summary = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{file}: not readable JSON ({exc})") from None
        problem = _summary_problem(summary)
        if problem:
            raise ValueError(f"{file}: {problem}")
        return summary

    @cached_property
    def oof(self) -> Table:
        """Out-of-fold predictions and targets."""
        table = read_table(
            self.root / OOF, target=self.summary["target"], task=self.summary["task"]
        )
        listed = [r["model"] for r in self.summary["leaderboard"] if r["kind"] == "member"]
        if sorted(listed) != sorted(table.predictions.members):
            raise ValueError(
                f"{self.root / LEADERBOARD}: lists members {sorted(listed)}, however "
                f"{OOF} holds {sorted(table.predictions.members)}"
            )
        return table

    @cached_property
    def test(self) -> Table:
        """Predictions and targets of the held-out test rows (same members and classes)."""
        P = self.oof.predictions
        return read_table(
            self.root / TEST,
            target=self.summary["target"],
            task=P.task,
            classes=P.classes,
            members=list(P.members),
        )

    @cached_property
    def test_output(self) -> np.ndarray | None:
        """The saved model's combined output on the test rows ``(n_test, n_outputs)``: values,
        or probabilities in class order; None for runs written before it was kept."""
        path = self.root / TEST_OUTPUT
        if not path.exists():
            return None
        from ensemblex.tables import _read_frame

        values = _read_frame(path).to_numpy(dtype=np.float64)
        P = self.test.predictions
        if values.shape != (P.n_samples, P.n_outputs) or not np.all(np.isfinite(values)):
            raise ValueError(
                f"{path}: must hold {P.n_outputs} finite column(s) for the {P.n_samples} test "
                f"rows, however: shape={values.shape}"
            )
        return values

    def load_model(self):
        """The saved ensemble (verified on load)."""
        from ensemblex.ensemble import Ensemble

        return Ensemble.load(self.model_dir)

    def member_costs(self) -> np.ndarray:
        """Each member's measured predict seconds per row, in member order."""
        per_row = {
            r["model"]: r.get("predict_seconds_per_row")
            for r in self.summary["leaderboard"]
            if r["kind"] == "member"
        }
        costs = [per_row.get(m) for m in self.oof.predictions.members]
        if any(c is None for c in costs):
            raise ValueError(f"{self.root}: {LEADERBOARD} records no predict time per member")
        return np.asarray(costs, dtype=float)

    # ------------------------------------------------------------ writing
    def write(self, model, tables: dict[str, tuple], summary: dict, test_output=None):
        """Write the saved model, the prediction tables (``{"oof": (P, y), "test": (P, y),
        "test_folds": ([P_fold, ...], y)}``), the model's combined output on the test rows
        (``test_output``, ``(n_test, n_outputs)``) and ``leaderboard.json`` (last, so its
        presence means the run finished)."""
        self.root.mkdir(parents=True, exist_ok=True)
        model.save(self.model_dir)
        files = {"oof": OOF, "test": TEST, "test_folds": TEST_FOLDS}
        for name, (P, labels) in tables.items():
            write_frame(_wide_table(P, labels, summary["target"]), self.root / files[name])
        if test_output is not None:
            columns = model.output_frame(test_output).columns
            columns = columns if test_output.shape[1] == 1 else columns[1:]  # proba_<class>
            write_frame(pd.DataFrame(test_output, columns=list(columns)), self.root / TEST_OUTPUT)
        write_json_atomic(summary, self.root / LEADERBOARD)
        self.__dict__.pop("summary", None)
        self.__dict__.pop("oof", None)
        self.__dict__.pop("test", None)
        self.__dict__.pop("test_output", None)


def _wide_table(P, labels, target: str):
    """``blend``'s wide layout with the target; a list of per-fold predictions (the same
    rows, one Predictions per fold model) stacks them fold by fold after a ``fold`` column."""
    if isinstance(P, Predictions):
        wide = to_frame(P)
        wide.insert(0, target, labels)
        return wide
    parts = []
    for k, fold in enumerate(P):
        wide = to_frame(fold)
        wide.insert(0, target, labels)
        wide.insert(0, FOLD, k)
        parts.append(wide)
    return pd.concat(parts, ignore_index=True)


def _summary_problem(summary) -> str | None:
    """What makes ``leaderboard.json`` unusable, or None: every reader (report, cascade,
    predict) may then index it without further checks."""
    if not isinstance(summary, dict):
        return "not a JSON object"
    missing = [k for k in _SUMMARY_TYPES if k not in summary]
    if missing:
        return f"missing entries {missing}"
    for key, kind in _SUMMARY_TYPES.items():
        if not isinstance(summary[key], kind):
            return f"{key!r} must be a {kind.__name__}, however: {summary[key]!r:.60}"
    if summary["task"] not in TASKS:
        return f"'task' must be one of {list(TASKS)}, however: {summary['task']!r:.60}"
    for i, row in enumerate(summary["leaderboard"]):
        if not (
            isinstance(row, dict)
            and isinstance(row.get("model"), str)
            and row.get("kind") in _ROW_KINDS
            and _is_number(row.get("cv_score"))
            and all(row.get(k) is None or _is_number(row[k]) for k in _ROW_NUMBERS)
        ):
            return (
                f"leaderboard row {i} must hold 'model' (text), 'kind' (one of "
                f"{list(_ROW_KINDS)}) and numbers, however: {row!r:.80}"
            )
    if not any(row["kind"] == "member" for row in summary["leaderboard"]):
        return "the leaderboard lists no member"
    return None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _lock_holder(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def model_dir(path) -> Path:
    """The saved model of a run folder, or ``path`` itself when it is a saved model."""
    run = RunFolder(path)
    return run.model_dir if run.model_dir.is_dir() else Path(path)
