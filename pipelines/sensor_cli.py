"""Drive a sensor of the code location from a shell, as the daemon would: `python -m pipelines.sensor_cli`.

    drain SENSOR [--max-ticks N]    tick until the sensor requests nothing new; run each request

Where no daemon runs (CI, a one-off backfill of the landing zone), this ticks the sensor on the
Dagster instance of `$DAGSTER_HOME` (SQLite locally, PostgreSQL in production), applies the dynamic
partitions it registers, and executes each requested run with `dagster job execute`, so the run uses
the job's own executor (multiprocess or Kubernetes) and carries the run key and sensor tags the daemon
sets. A run key that already has a run on the instance is skipped, as the daemon skips it: a second
`drain` (or a daemon started later) never runs the same upload twice. Exit 1 when a run failed.
"""

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from pipelines.demo_loop import SensorTicker

CODE_LOCATION_MODULE = "pipelines.definitions"


def already_run(instance: dg.DagsterInstance, sensor_name: str, run_key: str) -> bool:
    runs = instance.get_runs(
        filters=dg.RunsFilter(tags={"dagster/sensor_name": sensor_name, "dagster/run_key": run_key}), limit=1
    )
    return bool(runs)


def execute_request(job_name: str, sensor_name: str, request: dg.RunRequest) -> bool:
    """Run one request through `dagster job execute` (the job's executor); True when it succeeded."""
    tags = {**request.tags, "dagster/sensor_name": sensor_name, "dagster/run_key": request.run_key}
    if request.partition_key:
        tags["dagster/partition"] = request.partition_key
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster), "job", "execute", "-m", CODE_LOCATION_MODULE, "-j", job_name, "--tags", json.dumps(tags)]
    return subprocess.run(command, check=False).returncode == 0


def drain(sensor_name: str, max_ticks: int) -> tuple[int, int, int]:
    """Tick `sensor_name` until it requests nothing new; (runs, failed, skipped as already run)."""
    from pipelines.definitions import defs

    sensor = defs.resolve_sensor_def(sensor_name)
    job_name = sensor.job_name
    instance = dg.DagsterInstance.get()
    ticker = SensorTicker(defs, sensor_name, instance)
    runs = failed = skipped = 0
    for _ in range(max_ticks):
        requests = ticker.tick()
        fresh = [request for request in requests if not already_run(instance, sensor_name, request.run_key)]
        skipped += len(requests) - len(fresh)
        if not fresh:
            break
        for request in fresh:
            succeeded = execute_request(request.job_name or job_name, sensor_name, request)
            runs += 1
            failed += not succeeded
            print(f"{sensor_name}: {request.run_key} -> {'success' if succeeded else 'FAILURE'}", flush=True)
    return runs, failed, skipped


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.sensor_cli", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    drain_parser = commands.add_parser("drain", help="tick a sensor until it requests nothing new; run each request")
    drain_parser.add_argument("sensor")
    drain_parser.add_argument("--max-ticks", type=int, default=20)
    args = parser.parse_args(argv)
    runs, failed, skipped = drain(args.sensor, args.max_ticks)
    print(f"{args.sensor}: {runs} runs ({failed} failed), {skipped} requests already run")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
