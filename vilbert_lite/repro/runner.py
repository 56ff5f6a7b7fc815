"""The one way the tables run their cells: every job on any `concurrent.futures.Executor`.

    results = run_jobs(job, {key: args, ...}, workers=2)               # two local processes (spawn)
    results = run_jobs(job, jobs, executor=client.get_executor())      # e.g. a Dask cluster's workers

`job(args)` must be a module-level function (it is pickled to the workers) and returns the cell's result. Jobs
are submitted in the order given (the tables put the costliest first, so that no long cell starts last and
leaves the other workers idle); results come back by key, whatever order they finish in. Every run is a folder
keyed by its config, so a result does not depend on where or when its job ran.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Hashable
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from typing import Any


def run_jobs(job: Callable[[Any], Any], jobs: dict[Hashable, Any], *, workers: int = 1,
             executor: Executor | None = None, progress=None) -> dict[Hashable, Any]:  # fmt: skip
    """`job(args)` for every `key: args` of `jobs` -> {key: result}. executor: where the jobs run; None: in this
    process one after the other (workers <= 1), else `workers` local processes started with spawn (the executor
    is shut down at the end; a given one is left running). progress: a tqdm counter, one step per finished job."""
    results: dict[Hashable, Any] = {}
    if executor is None and workers <= 1:
        for key, args in jobs.items():
            results[key] = job(args)
            if progress is not None:
                progress.update()
        return results
    own = executor is None
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) if own else executor
    try:
        futures = {pool.submit(job, args): key for key, args in jobs.items()}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            if progress is not None:
                progress.update()
    finally:
        if own:
            pool.shutdown()
    return results
