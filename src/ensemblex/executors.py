"""Executors run independent (member, fold) tasks: local processes or a Ray cluster.

Both call the same task function and each task writes its own result to the run store, so
the backend changes where work happens, never the numbers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

BACKENDS = ("local", "ray")


def default_jobs() -> int:
    return max(1, os.cpu_count() or 1)


def run_tasks(
    fn: Callable,
    tasks: list,
    *args,
    backend: str = "local",
    n_jobs: int | None = None,
    ray_address: str | None = None,
) -> Iterator[str]:
    """Run ``fn(task, *args, n_threads)`` for every task; yield each result as it finishes.

    ``n_threads`` is the share of cores each task's own threads (GBDTs) may use, so that
    parallel tasks do not oversubscribe the machine.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, however: backend={backend!r}")
    if not tasks:
        return iter(())
    jobs = n_jobs or default_jobs()
    # from the requested parallelism, not from how many tasks are left, so that a resumed
    # run fits its remaining folds with the same thread counts (and numbers) as a fresh one
    n_threads = max(1, default_jobs() // jobs)
    jobs = min(jobs, len(tasks))
    if backend == "ray":
        return _run_ray(fn, tasks, args, jobs, n_threads, ray_address)
    return _run_local(fn, tasks, args, jobs, n_threads)


def _run_local(fn, tasks, args, jobs, n_threads) -> Iterator[str]:
    if jobs == 1:
        return (fn(task, *args, n_threads) for task in tasks)
    from joblib import Parallel, delayed, parallel_config

    with parallel_config(backend="loky", initializer=exit_with_parent, initargs=(os.getpid(),)):
        parallel = Parallel(n_jobs=jobs, return_as="generator_unordered")
    return parallel(delayed(fn)(task, *args, n_threads) for task in tasks)


def exit_with_parent(parent: int, interval: float = 0.5) -> None:
    """In a worker process: exit as soon as ``parent`` is gone (``kill -9`` of the CLI), so
    no worker outlives the command that started it.

    Two guards. On Linux the kernel's parent-death signal (``PR_SET_PDEATHSIG``) kills the
    worker at once, even while a native library holds the GIL for seconds. It fires when the
    *thread* that spawned the worker ends; loky spawns its first workers from the main thread,
    and respawned ones from its manager thread, which ends only when the pool shuts down.
    Elsewhere, and as a fallback, a daemon thread polls the parent id.
    """
    import signal
    import sys
    import threading
    import time

    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch():
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _run_ray(fn, tasks, args, jobs, n_threads, address) -> Iterator[str]:
    try:
        import ray
    except ImportError:
        raise ValueError(
            "backend 'ray' needs the ray package: pip install 'ensemblex[ray]'"
        ) from None
    if not ray.is_initialized():
        if address:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        else:
            ray.init(
                num_cpus=jobs,
                include_dashboard=False,
                ignore_reinit_error=True,
                log_to_driver=False,
            )
    shared = [ray.put(a) for a in args]  # ship the data once, not once per task
    remote = ray.remote(num_cpus=1)(lambda task, *rest: fn(task, *rest))
    pending = [remote.remote(task, *shared, n_threads) for task in tasks]

    def results():
        remaining = pending
        while remaining:
            ready, remaining = ray.wait(remaining, num_returns=1)
            yield ray.get(ready[0])

    return results()
