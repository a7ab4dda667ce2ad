import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ensemblex.ensemble import EnsembleClassifier
from ensemblex.executors import run_tasks


def _square(task, offset, n_threads):
    return task * task + offset


def test_local_executor_runs_every_task():
    assert sorted(run_tasks(_square, [1, 2, 3], 10, n_jobs=2)) == [11, 14, 19]
    assert list(run_tasks(_square, [4], 0, n_jobs=1)) == [16]
    with pytest.raises(ValueError, match="backend must be one of"):
        run_tasks(_square, [1], 0, backend="dask")


def test_ray_gives_the_same_leaderboard_as_local(churn_table):
    ray = pytest.importorskip("ray")
    X, y = churn_table.drop(columns="Exited")[:900], churn_table["Exited"][:900].to_numpy()
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        on_ray = EnsembleClassifier(members="fast", cv=3, backend="ray", n_jobs=2).fit(X, y)
    finally:
        ray.shutdown()
    local = EnsembleClassifier(members="fast", cv=3, backend="local", n_jobs=2).fit(X, y)
    np.testing.assert_array_equal(on_ray.oof_.values, local.oof_.values)
    pd.testing.assert_frame_equal(
        on_ray.leaderboard_[["model", "kind", "cv_score"]],
        local.leaderboard_[["model", "kind", "cv_score"]],
    )


_HOLD_THE_GIL = """
import os, sys, time
from pathlib import Path
from ensemblex.executors import run_tasks

def busy(task, folder, n_threads):
    Path(folder, f"{os.getpid()}.pid").write_text("")
    return sum(range(10**12))  # a C loop that never releases the GIL, like a native fit

if __name__ == "__main__":
    list(run_tasks(busy, [1, 2], sys.argv[1], n_jobs=2))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_a_killed_parent_even_while_holding_the_gil(tmp_path):
    """``kill -9`` of the command leaves no worker behind, even one inside a long native
    call (the polling thread alone could not run until that call returned)."""
    script = tmp_path / "hold.py"
    script.write_text(_HOLD_THE_GIL)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)])
    deadline = time.time() + 60
    while len(list(tmp_path.glob("*.pid"))) < 2 and time.time() < deadline:
        time.sleep(0.1)
    workers = [int(p.stem) for p in tmp_path.glob("*.pid")]
    assert len(workers) == 2, "the workers did not start"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 5
    while any(_alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if _alive(pid)], "workers outlived their parent"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"
