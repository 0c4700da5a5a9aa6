"""The whole production stack on 127.0.0.1: S3, PostgreSQL-backed Dagster, a Ray head by address and
a Spark standalone cluster, with the environment that points the platform (`FLEETML_ENV=prod`) at it.

All stores live in one bucket, `fleetml`, under one prefix each (lake/, landing/, quarantine/,
registry/, artifacts/, refs/, alerts/): one set of credentials and one bucket policy to reason
about, as a small deployment would have it.
"""

import atexit
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, Self

from stack.postgres import PostgresDatabase
from stack.ray_head import RayHead
from stack.seaweedfs import SeaweedS3
from stack.spark_standalone import SparkStandalone

BUCKET = "fleetml"
STORE_LOCATIONS = {
    "FLEETML_LAKE_URI": "lake",
    "FLEETML_LANDING_ROOT": "landing",
    "FLEETML_QUARANTINE_ROOT": "quarantine",
    "FLEETML_REGISTRY_URI": "registry",
    "FLEETML_ARTIFACTS_URI": "artifacts",
    "FLEETML_REFS_URI": "refs",
    "FLEETML_ALERT_LOG": "alerts/alerts.jsonl",
}
PG_SETTING = {
    field: {"env": f"DAGSTER_PG_{var}"}
    for field, var in (
        ("username", "USER"),
        ("password", "PASSWORD"),
        ("hostname", "HOST"),
        ("db_name", "DB"),
        ("port", "PORT"),
    )
}


class Service(Protocol):
    def start(self) -> Any: ...
    def stop(self) -> None: ...
    def pids(self) -> list[int]: ...
    def environment(self) -> dict[str, str]: ...


def dagster_instance_config() -> dict[str, Any]:
    """Run, event-log and schedule storage in PostgreSQL (dagster-postgres), credentials read from
    the environment when the instance loads, never written to the file."""
    return {
        "telemetry": {"enabled": False},
        # dagster-postgres installs psycopg2; SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3.
        "storage": {"postgres": {"postgres_db": {**PG_SETTING, "scheme": "postgresql+psycopg2"}}},
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {"max_concurrent_runs": 2},
        },
    }


class LocalStack:
    """Starts the four servers under `directory` (S3 first: the others' environment carries its
    credentials; then PostgreSQL, Ray and Spark concurrently) and stops them in reverse order, also at
    interpreter exit and on SIGTERM."""

    def __init__(self, directory: Path, ray_cpus: int = 2, spark_worker_cores: int = 1) -> None:
        self.directory = Path(directory).resolve()
        self.dagster_home = self.directory / "dagster_home"
        self.s3 = SeaweedS3(self.directory / "s3")
        self.postgres = PostgresDatabase(self.directory / "postgres")
        self.ray = RayHead(self.directory / "ray", num_cpus=ray_cpus)
        self.spark = SparkStandalone(self.directory / "spark", worker_cores=spark_worker_cores)
        self.started: list[Service] = []
        self.startup_seconds: dict[str, float] = {}
        self._lock = threading.Lock()
        self._previous_sigterm: Any = None

    def start(self) -> Self:
        atexit.register(self.stop)
        self._stop_on_sigterm()
        try:
            self._start_timed("s3", self.s3)
            self.s3.create_bucket(BUCKET)
            # Ray tasks and Spark executors read the lake themselves.
            self.ray.env = self.spark.env = self.s3.environment()
            with ThreadPoolExecutor(max_workers=3) as pool:
                futures = [
                    pool.submit(self._start_timed, name, service)
                    for name, service in (
                        ("postgres", self.postgres),
                        ("ray", self.ray),
                        ("spark", self.spark),
                    )
                ]
            for future in futures:
                future.result()  # re-raise the first failure, after every start has finished
            self._write_dagster_yaml()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_timed(self, name: str, service: Service) -> None:
        started = time.perf_counter()
        service.start()
        with self._lock:
            self.started.append(service)
            self.startup_seconds[name] = round(time.perf_counter() - started, 1)

    def _write_dagster_yaml(self) -> None:
        import yaml

        self.dagster_home.mkdir(parents=True, exist_ok=True)
        (self.dagster_home / "dagster.yaml").write_text(
            yaml.safe_dump(dagster_instance_config(), sort_keys=False)
        )

    def _stop_on_sigterm(self) -> None:
        """SIGTERM would end the interpreter without `finally` blocks or atexit: turn it into SystemExit."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            self._previous_sigterm = signal.signal(signal.SIGTERM, exit_on_signal)

    def stop(self) -> None:
        """Reverse order of start; every service is stopped even when another fails to."""
        errors = []
        while self.started:
            service = self.started.pop()
            try:
                service.stop()
            except Exception as error:  # noqa: BLE001 - keep stopping the rest; all are reported below
                errors.append(error)
        if self._previous_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None
        atexit.unregister(self.stop)
        if errors:
            raise RuntimeError(f"stopping the stack: {errors}")

    def pids(self) -> list[int]:
        """Every live process of the stack's servers (empty once stopped)."""
        return [pid for service in (self.s3, self.postgres, self.ray, self.spark) for pid in service.pids()]

    def environment(self) -> dict[str, str]:
        """What a shell, `dagster dev` or a test needs to run the platform against this stack."""
        stores = {variable: f"s3://{BUCKET}/{location}" for variable, location in STORE_LOCATIONS.items()}
        return {
            **self.s3.environment(),
            **self.postgres.environment(),
            **self.ray.environment(),
            **self.spark.environment(),
            **stores,
            "FLEETML_ENV": "prod",
            # Every production server is here but Kubernetes: steps run as local processes instead.
            "FLEETML_EXECUTOR": "multiprocess",
            "DAGSTER_HOME": str(self.dagster_home),
        }

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    """A signal handler that unwinds like `sys.exit`, so `finally` blocks stop the servers."""
    raise SystemExit(128 + signum)
