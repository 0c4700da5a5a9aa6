"""A Spark standalone cluster on 127.0.0.1 (one master, one worker) from pyspark's own distribution.

Executors inherit the worker's environment: the S3 variables given here are how their Python
workers' pyarrow reaches the lake, as a Spark cluster in production gets them from its pods.
"""

import json
import os
import signal
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from stack.ports import HOST, free_ports, wait_until
from stack.processes import ServerProcess

DAEMON_MEMORY = "512m"
"""Heap of the master and worker JVMs themselves (Spark's default is 1g each); executors are separate."""


def spark_home() -> Path:
    """The installed pyspark package carries `bin/spark-class` and the jars of a full distribution."""
    import importlib.util

    spec = importlib.util.find_spec("pyspark")
    assert spec is not None and spec.origin is not None, "pyspark is not installed"
    return Path(spec.origin).parent


class SparkStandalone:
    """Master and worker, each in its own session; the worker offers `worker_cores` cores and
    `worker_memory` to executors, whose Python workers run `python_executable`."""

    def __init__(
        self,
        directory: Path,
        env: Mapping[str, str] | None = None,
        worker_cores: int = 1,
        worker_memory: str = "1g",
        python_executable: str = sys.executable,
        startup_timeout_s: float = 90.0,
    ) -> None:
        self.directory = Path(directory).resolve()
        self.env = dict(env or {})
        self.worker_cores = worker_cores
        self.worker_memory = worker_memory
        self.python_executable = python_executable
        self.startup_timeout_s = startup_timeout_s
        self.port = 0
        self.webui_port = 0
        self._master: ServerProcess | None = None
        self._worker: ServerProcess | None = None

    @property
    def master_url(self) -> str:
        return f"spark://{HOST}:{self.port}"

    def _daemon_env(self) -> dict[str, str]:
        home = spark_home()
        return {
            **os.environ,
            **self.env,
            "SPARK_HOME": str(home),
            "SPARK_CONF_DIR": str(self.directory / "conf"),
            "SPARK_LOCAL_IP": HOST,
            "SPARK_LOCAL_DIRS": str(self.directory / "local"),
            "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
            "PYSPARK_PYTHON": self.python_executable,
        }

    def start(self) -> Self:
        for sub in ("conf", "local", "work"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        self.port, self.webui_port, worker_port, worker_webui_port = free_ports(4)
        spark_class = str(spark_home() / "bin" / "spark-class")
        env = self._daemon_env()
        self._master = ServerProcess(
            "Spark master",
            [
                spark_class,
                "org.apache.spark.deploy.master.Master",
                "--host",
                HOST,
                "--port",
                self.port,
                "--webui-port",
                self.webui_port,
            ],
            self.directory / "master.log",
            env=env,
            cwd=self.directory,
        )
        self._worker = ServerProcess(
            "Spark worker",
            [
                spark_class,
                "org.apache.spark.deploy.worker.Worker",
                self.master_url,
                "--host",
                HOST,
                "--port",
                worker_port,
                "--webui-port",
                worker_webui_port,
                "--cores",
                self.worker_cores,
                "--memory",
                self.worker_memory,
                "--work-dir",
                self.directory / "work",
            ],
            self.directory / "worker.log",
            env=env,
            cwd=self.directory,
        )
        try:
            self._master.start()
            self._worker.start()  # it retries its registration until the master listens
            wait_until(
                self._worker_registered,
                f"Spark worker registered at {self.master_url}",
                self.startup_timeout_s,
                interval_s=0.5,
                still_starting=self._failure,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _failure(self) -> str | None:
        return next(
            (
                reason
                for server in (self._master, self._worker)
                if server and (reason := server.exit_reason())
            ),
            None,
        )

    def _worker_registered(self) -> None:
        """The master's web UI reports its alive workers as JSON."""
        with urllib.request.urlopen(f"http://{HOST}:{self.webui_port}/json", timeout=2) as response:
            state = json.load(response)
        if state.get("aliveworkers", 0) < 1:
            raise RuntimeError(f"master is {state.get('status')} with no alive worker yet")

    def stop(self) -> None:
        """Worker first (it takes its executors down), then the master."""
        for server in (self._worker, self._master):
            if server is not None:
                server.stop(signal.SIGTERM, grace_s=10)
        self._worker = self._master = None

    def pids(self) -> list[int]:
        return [pid for server in (self._master, self._worker) if server for pid in server.members()]

    def environment(self) -> dict[str, str]:
        # Executors call the driver back; the stack listens on 127.0.0.1 only.
        return {"FLEETML_SPARK_MASTER": self.master_url, "FLEETML_SPARK_DRIVER_HOST": HOST}

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
