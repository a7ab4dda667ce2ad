"""Deployment figures on the bundled churn table: run-folder size, `ensemblex predict` CPU
seconds on its 10,000 rows, test scores of the fold-model and refit-full ensembles, and how
fast the CLI starts.

    .venv/bin/python bench/deploy.py [--readme]

Runs `ensemblex run` twice (the default zoo, with and without --refit-full) into
bench/.cache/deploy-*, times `ensemblex predict` and `ensemblex --help` as separate
processes (CPU = user + system seconds of the child, from resource.getrusage), and writes
bench/results/deploy.json; --readme puts the table between the README's
`<!-- deploy:start -->` markers.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from readme import replace_section

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"
RESULTS = ROOT / "bench" / "results" / "deploy.json"
CLI = ROOT / ".venv" / "bin" / "ensemblex"
DATA = ROOT / "src" / "ensemblex" / "data" / "churn_modelling.csv"


def timed(args: list[str]) -> dict:
    """Wall and CPU seconds (user + system) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu}


def folder_size(path: Path) -> int:
    """Bytes on disk, each hard-linked file counted once (as `du` does)."""
    seen, total = set(), 0
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def run_once(name: str, extra: list[str]) -> dict:
    out = CACHE / f"deploy-{name}"
    if out.exists():
        shutil.rmtree(out)
    print(f"ensemblex run {' '.join(extra)} -> {out}", flush=True)
    fit = timed([str(CLI), "run", "--out", str(out), *extra])
    summary = json.loads((out / "leaderboard.json").read_text())
    predict = [
        timed([str(CLI), "predict", str(out), str(DATA), "--out", str(out / "p.csv")])
        for _ in range(3)
    ]
    chosen = next(r for r in summary["leaderboard"] if r["kind"] == "combiner (chosen)")
    parts = {p.name: folder_size(p) for p in out.iterdir() if p.is_dir()}
    (out / "p.csv").unlink()
    (out / "p.csv.json").unlink()
    return {
        "run_seconds": fit["wall_s"],
        "folder_mb": folder_size(out) / 1e6,
        "parts_mb": {k: v / 1e6 for k, v in parts.items()},
        "predict_cpu_s": statistics.median(p["cpu_s"] for p in predict),
        "predict_wall_s": statistics.median(p["wall_s"] for p in predict),
        "chosen": summary["chosen"],
        "fold_models_test_score": chosen["test_score"],
        "deployed": summary["deployed"],
    }


# What `predict` cannot go below: starting Python and importing what loading the default
# zoo's model imports (pandas, scikit-learn, the three GBDT libraries, skops and ensemblex).
FLOOR = (
    "from ensemblex.ensemble import Ensemble; import lightgbm, xgboost, catboost; "
    "from ensemblex.members.skops_io import skops_io; skops_io()"
)


def startup() -> dict:
    runs = [timed([str(CLI), "--help"]) for _ in range(7)]
    floor = [timed([str(CLI.with_name("python")), "-c", FLOOR]) for _ in range(5)]
    return {
        "help_wall_s": statistics.median(r["wall_s"] for r in runs),
        "help_cpu_s": statistics.median(r["cpu_s"] for r in runs),
        "import_floor_cpu_s": statistics.median(r["cpu_s"] for r in floor),
    }


def table(result: dict) -> str:
    rows = [
        "| churn, default zoo | run folder | `predict` 10,000 rows (CPU s) | models run | "
        "test log-loss | test accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in (("folds", "fold models"), ("refit_full", "`--refit-full`")):
        r = result[name]
        d = r["deployed"]
        rows.append(
            f"| {label} | {r['folder_mb']:.0f} MB | {r['predict_cpu_s']:.2f} "
            f"({r['predict_wall_s']:.2f} wall) | {d['models']} | {d['test_score']:.5f} | "
            f"{d['test_accuracy']:.4f} |"
        )
    s = result["startup"]
    rows.append("")
    rows.append(
        f"`ensemblex --help`: {s['help_wall_s']:.2f} s wall ({s['help_cpu_s']:.2f} s CPU), "
        f"median of 7. Fold-model ensemble's test log-loss in the refit-full run: "
        f"{result['refit_full']['fold_models_test_score']:.5f}. Starting Python and importing "
        f"what `predict` loads (no model, no rows): {s['import_floor_cpu_s']:.2f} s CPU."
    )
    return "\n".join(rows)


def main(argv: list[str]) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    # ensemblex's bytecode, as any install has it after its first run (here the environment
    # sets PYTHONDONTWRITEBYTECODE, which would make every timed start compile ~100 modules)
    subprocess.run([str(CLI.with_name("python")), "-m", "compileall", "-q", str(ROOT / "src")])
    result = {
        "machine": {"cpus": os.cpu_count()},
        "folds": run_once("folds", []),
        "refit_full": run_once("refit-full", ["--refit-full"]),
        "startup": startup(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    text = table(result)
    print(text)
    if "--readme" in argv:
        replace_section("deploy", text)


if __name__ == "__main__":
    main(sys.argv[1:])
