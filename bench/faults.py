"""Fault injection: `ensemblex run` killed at random moments, its store damaged at random.

    .venv/bin/python bench/faults.py [--kills 20] [--damages 20] [--seed 0]

On the bundled churn table (``--zoo fast --folds 3``) it makes one uninterrupted reference
run, then

- kills a fresh run with SIGKILL at a random moment of its life (uniform over the reference
  run's duration), checks that no worker process outlives it, and reruns the same command to
  completion;
- damages one random file of a finished run's store (``work/``: truncate, flip a byte, delete,
  or replace a fold's ``done.json``) and reruns the same command;

and checks that every rerun ends with output identical to the reference: the leaderboard's
scores (timings aside), the OOF and test tables, and the saved model's predictions.
Results in bench/results/faults.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / ".venv" / "bin" / "ensemblex"
DATA = ROOT / "src" / "ensemblex" / "data" / "churn_modelling.csv"
RESULTS = Path(__file__).resolve().parent / "results"
ORPHAN_AFTER_S = 20.0  # a worker still alive this long after its parent's death is an orphan
ARGS = ["--target", "Exited", "--zoo", "fast", "--folds", "3", "--seed", "0"]


def run(out: Path, kill_after: float | None = None) -> tuple[int, float, set[int]]:
    """Run the CLI; with ``kill_after``, SIGKILL it then. Returns (exit code, seconds, the
    processes it had started when it was killed)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(CLI), "run", str(DATA), *ARGS, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if kill_after is None:
        return proc.wait(), time.perf_counter() - start, set()
    children: set[int] = set()
    try:
        proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        children = children_of(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return proc.returncode, time.perf_counter() - start, children


def children_of(pid: int) -> set[int]:
    """The live child processes of ``pid`` (loky's workers and resource tracker)."""
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in found.split()}


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (a zombie has exited)."""
    left = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            left.add(pid)
    return left


def fingerprint(out: Path) -> dict:
    """What must be identical between runs: scores, prediction tables, model predictions."""
    from ensemblex.ensemble import Ensemble

    summary = json.loads((out / "leaderboard.json").read_text())
    board = [{k: v for k, v in row.items() if "seconds" not in k} for row in summary["leaderboard"]]
    rows = pd.read_csv(DATA).drop(columns="Exited").head(500)
    return {
        "leaderboard": board,
        "chosen": summary["chosen"],
        "oof": pd.read_parquet(out / "oof.parquet"),
        "test": pd.read_parquet(out / "test.parquet"),
        "model": Ensemble.load(out / "model").predict_proba(rows),
    }


def same(a: dict, b: dict) -> bool:
    return (
        a["leaderboard"] == b["leaderboard"]
        and a["chosen"] == b["chosen"]
        and a["oof"].equals(b["oof"])
        and a["test"].equals(b["test"])
        and np.array_equal(a["model"], b["model"])
    )


def damage(out: Path, rng: np.random.Generator) -> str:
    """Damage one random file of the store; return what was done."""
    files = sorted(p for p in (out / "work" / "folds").rglob("*") if p.is_file())
    file = files[rng.integers(len(files))]
    kind = ["truncate", "flip", "delete", "done"][rng.integers(4)]
    data = file.read_bytes()
    if kind == "truncate":
        file.write_bytes(data[: rng.integers(len(data))])
    elif kind == "flip":
        i = int(rng.integers(len(data)))
        file.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :])
    elif kind == "delete":
        file.unlink()
    else:  # a well-formed done.json that lists a wrong digest
        done = file.parent / "done.json"
        meta = json.loads(done.read_text())
        name = next(iter(meta["sha256"]))
        meta["sha256"][name] = "0" * 64
        done.write_text(json.dumps(meta))
        file = done
    return f"{kind} {file.relative_to(out)}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--damages", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="ensemblex-faults-"))
    try:
        code, reference_seconds, _ = run(tmp / "reference")
        assert code == 0, "the reference run failed"
        reference = fingerprint(tmp / "reference")
        print(f"reference run: {reference_seconds:.1f} s", flush=True)
        kills = []
        for i in range(args.kills):
            out = tmp / f"kill{i}"
            moment = float(rng.uniform(0.5, reference_seconds))
            code, _, children = run(out, kill_after=moment)
            # a worker dies at once (parent-death signal) or, if it was still starting up
            # when its parent died, as soon as its start-up reaches the check
            killed_at = time.perf_counter()
            left = alive(children)
            while left and time.perf_counter() - killed_at < ORPHAN_AFTER_S:
                time.sleep(0.1)
                left = alive(children)
            orphans = sorted(left)
            workers_gone_s = time.perf_counter() - killed_at
            rerun, _, _ = run(out)
            ok = rerun == 0 and same(fingerprint(out), reference)
            kills.append(
                {
                    "at_s": moment,
                    "killed": code == -signal.SIGKILL,
                    "orphans": orphans,
                    "workers_gone_s": workers_gone_s,
                    "rerun_exit": rerun,
                    "identical": ok,
                }
            )
            print(
                f"kill {i + 1}: at {moment:.1f} s, workers gone after {workers_gone_s:.1f} s, "
                f"orphans {len(orphans)}, identical {ok}",
                flush=True,
            )
            shutil.rmtree(out, ignore_errors=True)
        damages = []
        out = tmp / "damaged"
        shutil.copytree(tmp / "reference", out)
        for i in range(args.damages):
            what = damage(out, rng)
            rerun, seconds, _ = run(out)
            ok = rerun == 0 and same(fingerprint(out), reference)
            damages.append(
                {"damage": what, "rerun_exit": rerun, "identical": ok, "rerun_s": seconds}
            )
            print(f"damage {i + 1}: {what}; rerun {seconds:.1f} s, identical {ok}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {
        "command": f"ensemblex run churn_modelling.csv {' '.join(ARGS)}",
        "reference_seconds": reference_seconds,
        "kills": len(kills),
        "kills_that_hit_a_running_process": sum(k["killed"] for k in kills),
        "kills_identical_after_rerun": sum(k["identical"] for k in kills),
        "orphaned_workers": sum(len(k["orphans"]) for k in kills),
        "slowest_worker_exit_s": max(k["workers_gone_s"] for k in kills),
        "damages": len(damages),
        "damages_identical_after_rerun": sum(d["identical"] for d in damages),
        "details": {"kills": kills, "damages": damages},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "faults.json").write_text(json.dumps(summary, indent=2))
    print({k: v for k, v in summary.items() if k != "details"})
    if (
        summary["kills_identical_after_rerun"] < len(kills)
        or summary["damages_identical_after_rerun"] < len(damages)
        or summary["orphaned_workers"]
    ):
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
