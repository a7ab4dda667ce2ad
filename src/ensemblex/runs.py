"""Reading a run folder written by ``ensemblex run``: its summary and prediction tables."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ensemblex.tables import Table, read_table


@dataclass(frozen=True)
class RunFolder:
    """``leaderboard.json`` and the OOF and test tables of one run."""

    root: Path
    summary: dict
    oof: Table
    test: Table

    def member_costs(self) -> np.ndarray:
        """Each member's measured predict seconds per row, in member order."""
        per_row = {
            r["model"]: r.get("predict_seconds_per_row")
            for r in self.summary["leaderboard"]
            if r["kind"] == "member"
        }
        costs = [per_row.get(m) for m in self.oof.predictions.members]
        if any(c is None for c in costs):
            raise ValueError(f"{self.root}: leaderboard.json records no predict time per member")
        return np.asarray(costs, dtype=float)


def read_run(run_dir) -> RunFolder:
    """Read a run folder; errors name the folder."""
    root = Path(run_dir)
    if not (root / "leaderboard.json").is_file():
        raise ValueError(f"{root}: no leaderboard.json; not a folder written by `ensemblex run`")
    summary = json.loads((root / "leaderboard.json").read_text())
    target = summary["target"]
    oof = read_table(root / "oof.parquet", target=target, task=summary["task"])
    P = oof.predictions
    test = read_table(
        root / "test.parquet",
        target=target,
        task=P.task,
        classes=P.classes,
        members=list(P.members),
    )
    return RunFolder(root, summary, oof, test)
