"""The closed loop of `make demo`: deploy to a drifting fleet, listen, detect drift, retrain.

The Dagster daemon is not running during `make demo`, so the demo ticks the two sensors itself,
exactly as the daemon would: it keeps their cursors, applies the dynamic partitions they register and
executes the runs they request (with their run keys and tags) on the same instance.
"""

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import dagster as dg

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class SensorTicker:
    """One sensor ticked in-process with a persistent cursor, as the daemon's tick loop does."""

    defs: dg.Definitions
    name: str
    instance: dg.DagsterInstance
    cursor: str | None = None

    def tick(self) -> list[dg.RunRequest]:
        sensor = self.defs.resolve_sensor_def(self.name)
        resources = {key: self.defs.resources[key] for key in sensor.required_resource_keys}
        with dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=resources, definitions=self.defs
        ) as context:
            result = sensor(context)
            if isinstance(result, dg.SensorResult):
                for request in result.dynamic_partitions_requests or []:
                    self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
                self.cursor = result.cursor if result.cursor is not None else context.cursor
                return list(result.run_requests or [])
            self.cursor = context.cursor
            return list(result or [])


def execute(
    defs: dg.Definitions,
    job_name: str,
    instance: dg.DagsterInstance,
    request: dg.RunRequest | None = None,
    sensor_name: str | None = None,
):
    """Run `job_name` in-process; a sensor's request keeps the run key and sensor tags the daemon
    would set, so a daemon started later recognises the run and never requests it again."""
    job = defs.resolve_job_def(job_name)
    tags = dict(request.tags) if request else {}
    if request is not None and sensor_name is not None:
        tags.update({"dagster/sensor_name": sensor_name, "dagster/run_key": request.run_key})
    return job.execute_in_process(
        instance=instance,
        partition_key=request.partition_key if request else None,
        tags={**tags, "fleetml/trigger": tags.get("fleetml/trigger", "make demo")},
        run_config=QUIET,
        raise_on_error=False,
    )


class RunWorkers:
    """Processes that execute requested runs concurrently on the same instance, as the daemon's run
    queue does with `max_concurrent_runs` (the feedback batches of a tick are independent runs).

    Started first, so that importing the code location, great-expectations and evidently in each
    worker runs on the core the demo's one-process ingestion leaves idle. Spawned, not forked: the
    demo process holds a Ray runtime.
    """

    def __init__(self, workers: int = 2) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        self._warming = [self._pool.submit(_warm_run_worker) for _ in range(workers)]

    def run_all(self, job_name: str, requests: list[dg.RunRequest], sensor_name: str) -> list[tuple[str, bool]]:
        """(run id, success) of each request, in request order."""
        futures = [
            self._pool.submit(_execute_request, job_name, request.partition_key, request.run_key, dict(request.tags), sensor_name)
            for request in requests
        ]
        return [future.result() for future in futures]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # The workers exit while the demo stops Ray; the interpreter joins them at exit.
        self._pool.shutdown(wait=False, cancel_futures=True)


def _warm_run_worker() -> None:
    import evidently  # noqa: F401 - imported here so the first drift report does not pay for it
    import great_expectations  # noqa: F401

    import pipelines.definitions  # noqa: F401


def _execute_request(job_name: str, partition_key: str | None, run_key: str | None, tags: dict, sensor_name: str) -> tuple[str, bool]:
    from pipelines.definitions import defs

    request = dg.RunRequest(run_key=run_key, partition_key=partition_key, tags=tags)
    with dg.DagsterInstance.get() as instance:
        result = execute(defs, job_name, instance, request, sensor_name)
    return result.run_id, result.success


def drain_feedback(ticker: SensorTicker, workers: RunWorkers, run_ids: list[str]) -> tuple[int, int]:
    """Tick the feedback sensor until the landing zone is drained; run every requested batch."""
    runs = failed = 0
    while requests := ticker.tick():
        for run_id, success in workers.run_all("edge_feedback_job", requests, ticker.name):
            run_ids.append(run_id)
            runs += 1
            failed += not success
    return runs, failed


@contextmanager
def local_ray_runtime() -> Iterator[None]:
    """One local Ray runtime for every training of the demo, started here, lent to each training step
    by `LocalRayOnDemand` and shut down at the end, instead of one start and stop per run."""
    import ray

    from pipelines.environment import LOCAL_RAY_INIT_OPTIONS

    ray.init(**LOCAL_RAY_INIT_OPTIONS)
    try:
        yield
    finally:
        ray.shutdown()


def bundle_ref(home: Path, model: str) -> dict:
    return json.loads((home / "refs" / model / "edge_bundle.json").read_text())


@dataclass
class StageClock:
    """Wall time of each demo stage, for the loop's table and `--timings`."""

    stages: dict[str, float]

    def __init__(self) -> None:
        self.stages = {}
        self._started = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage] = now - self._started
        self._started = now
