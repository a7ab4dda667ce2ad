"""The main job as a library function: task checks before fitting, the run folder's lock."""

import os
import subprocess
import sys

import numpy as np
import pytest

from ensemblex.experiment import run_experiment
from ensemblex.runs import RunFolder


@pytest.fixture
def small_churn(churn_table):
    return churn_table.head(300)


def test_a_task_that_contradicts_the_target_fails_before_anything_is_written(small_churn, tmp_path):
    frame = small_churn.assign(Exited=np.arange(len(small_churn)) % 3)
    with pytest.raises(ValueError, match="binary"):
        run_experiment(frame, "Exited", tmp_path / "run", members="fast", task="binary", folds=2)
    assert not (tmp_path / "run").exists()


def test_a_rare_class_is_named_by_its_label(small_churn, tmp_path):
    frame = small_churn.assign(Exited=np.where(np.arange(len(small_churn)) < 3, "rare", "common"))
    with pytest.raises(ValueError, match=r"class 'rare' has 2 rows; 5-fold cross-fitting"):
        run_experiment(frame, "Exited", tmp_path / "run", members="fast", folds=5)


def test_a_second_writer_is_refused_and_a_stale_lock_taken_over(tmp_path):
    run = RunFolder(tmp_path / "run")
    with run.lock():
        assert (tmp_path / "run" / ".lock").read_text() == str(os.getpid())
        holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            (tmp_path / "run" / ".lock").write_text(str(holder.pid))
            other = RunFolder(tmp_path / "run")
            held = rf"another ensemblex process \(pid {holder.pid}\)"
            with pytest.raises(ValueError, match=held):
                with other.lock():
                    pass
        finally:
            holder.kill()
            holder.wait()
        # its holder is gone: the lock is stale and taken over
        with RunFolder(tmp_path / "run").lock():
            assert (tmp_path / "run" / ".lock").read_text() == str(os.getpid())
    assert not (tmp_path / "run" / ".lock").exists()


def test_run_experiment_writes_a_run_the_folder_type_reads(small_churn, tmp_path):
    summary = run_experiment(small_churn, "Exited", tmp_path / "run", members="fast", folds=2)
    run = RunFolder(tmp_path / "run")
    assert run.summary == summary
    assert summary["rows"] == {"train": 240, "test": 60}
    model = run.load_model()
    best = min(
        (r for r in summary["leaderboard"] if r["kind"] == "member"), key=lambda r: r["cv_score"]
    )
    P = run.test.predictions
    assert P.n_samples == 60 and best["model"] in P.members
    assert model.member_names_ == list(P.members)
