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
