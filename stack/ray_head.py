"""A Ray head node on 127.0.0.1 that clients reach by address (`ray://127.0.0.1:PORT`), as the
platform reaches a KubeRay cluster in production.

It runs `ray start --head --block` from this interpreter's environment with the repository as working
directory, so its workers import the project's modules like the driver does. Its own temp dir and
ports keep it apart from in-process Ray clusters (dagster-ray's `LocalRay`) in the same tests.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from stack.ports import HOST, free_port_range, free_ports, wait_until
from stack.processes import ServerProcess

REPO_ROOT = Path(__file__).resolve().parents[1]
MAX_TEMP_DIR_CHARS = 45
"""Ray puts Unix sockets at `<temp>/session_<date>_<pid>/sockets/plasma_store`; Linux caps socket
paths at 107 bytes, which leaves about 45 for the temp dir."""
CLIENT_PROBE = "import ray; ray.init({address!r}, logging_level='ERROR'); assert ray.get(ray.remote(lambda: 1).remote()) == 1"


class RayHead:
    """A single-node Ray cluster with `num_cpus` CPUs; its logs and sessions under `directory`."""

    def __init__(
        self,
        directory: Path,
        num_cpus: int = 2,
        env: Mapping[str, str] | None = None,
        object_store_bytes: int = 512 * 1024**2,
        startup_timeout_s: float = 120.0,
    ) -> None:
        self.directory = Path(directory).resolve()
        self.num_cpus = num_cpus
        self.env = dict(env or {})
        self.object_store_bytes = object_store_bytes
        self.startup_timeout_s = startup_timeout_s
        self.client_port = 0
        self._temp_dir: Path | None = None
        self._server: ServerProcess | None = None

    @property
    def address(self) -> str:
        return f"ray://{HOST}:{self.client_port}"

    def _session_temp_dir(self) -> Path:
        """`directory/tmp`, or a short directory under the system temp dir when that path is too long."""
        preferred = self.directory / "tmp"
        if len(str(preferred)) <= MAX_TEMP_DIR_CHARS:
            preferred.mkdir(parents=True, exist_ok=True)
            return preferred
        return Path(tempfile.mkdtemp(prefix="fleetml-ray-"))

    def start(self) -> Self:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._temp_dir = self._session_temp_dir()
        gcs, client, node_manager, object_manager, agent_http, agent_grpc, metrics, runtime_env = free_ports(
            8
        )
        self.client_port = client
        workers = free_port_range(100)
        args = [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--head",
            "--block",
            f"--node-ip-address={HOST}",
            f"--port={gcs}",
            f"--ray-client-server-port={client}",
            f"--node-manager-port={node_manager}",
            f"--object-manager-port={object_manager}",
            f"--min-worker-port={workers.start}",
            f"--max-worker-port={workers.stop - 1}",
            f"--dashboard-agent-listen-port={agent_http}",
            f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--metrics-export-port={metrics}",
            f"--runtime-env-agent-port={runtime_env}",
            f"--num-cpus={self.num_cpus}",
            f"--object-store-memory={self.object_store_bytes}",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={self._temp_dir}",
        ]
        env = {**os.environ, **self.env, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        self._server = ServerProcess(
            "Ray head", args, self.directory / "ray-start.log", env=env, cwd=REPO_ROOT
        )
        self._server.start()
        try:
            # A client that connects before the node is up is left hanging by Ray for ~40 s: wait for
            # `ray start` to report the runtime started, then prove a client runs a task.
            wait_until(
                self._runtime_started,
                "Ray head",
                self.startup_timeout_s,
                still_starting=self._server.exit_reason,
            )
            wait_until(
                self._client_runs_a_task,
                f"Ray client at {self.address}",
                self.startup_timeout_s,
                interval_s=1,
                still_starting=self._server.exit_reason,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _runtime_started(self) -> None:
        assert self._server is not None
        if "Ray runtime started" not in self._server.log_path.read_text(errors="replace"):
            raise RuntimeError("not started yet")

    def _client_runs_a_task(self) -> None:
        """In a separate process: a Ray client in this one would clash with `ray.init` calls of tests."""
        probe = CLIENT_PROBE.format(address=self.address)
        env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
        completed = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env, check=False
        )
        if completed.returncode != 0:
            raise RuntimeError(completed.stderr[-2000:])

    def stop(self) -> None:
        """SIGTERM to `ray start` alone: it drains the node through the GCS and stops its processes
        (signalling the whole session at once kills the GCS first, and the drain then waits 30 s)."""
        if self._server is not None:
            self._server.stop(signal.SIGTERM, grace_s=20)
            self._server = None
        if self._temp_dir is not None and not self._temp_dir.is_relative_to(self.directory):
            shutil.rmtree(self._temp_dir, ignore_errors=True)
        self._temp_dir = None

    def pids(self) -> list[int]:
        return self._server.members() if self._server else []

    def environment(self) -> dict[str, str]:
        return {"FLEETML_RAY_ADDRESS": self.address, "RAY_AUTH_MODE": "disabled"}

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
