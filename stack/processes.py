"""A server process of the stack: started in a session of its own, stopped with everything it spawned.

Ray's head and Spark's daemons start children of their own (raylet, GCS, workers, executors); a
session groups them all, so stopping the session leaves nothing behind even when the leader dies
first or ignores its stop signal.
"""

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

LOG_TAIL_LINES = 25


def _state_and_session(pid: int) -> tuple[str, int] | None:
    """From /proc/PID/stat; None once the process is gone."""
    try:
        stat = Path("/proc", str(pid), "stat").read_text()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces): state ppid pgrp session ...
    state, _ppid, _pgrp, session = stat.rsplit(")", 1)[1].split()[:4]
    return state, int(session)


def _running(state: str) -> bool:
    return state not in ("Z", "X")  # a zombie has exited and only awaits its parent


def session_members(session_id: int) -> list[int]:
    """Running processes of a session."""
    members = []
    for entry in os.listdir("/proc"):
        found = _state_and_session(int(entry)) if entry.isdigit() else None
        if found and found[1] == session_id and _running(found[0]):
            members.append(int(entry))
    return members


def alive(pids: list[int]) -> list[int]:
    """The pids among `pids` still running."""
    return [pid for pid in pids if (found := _state_and_session(pid)) and _running(found[0])]


class ServerProcess:
    """One long-running server command, its output appended to `log_path`."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: int | None = None,
        group: int | None = None,
    ) -> None:
        self.name = name
        self.args = [str(arg) for arg in args]
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.user = user
        self.group = group
        self._process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None, f"{self.name} was not started"
        return self._process.pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                user=self.user,
                group=self.group,
                extra_groups=[] if self.group is not None else None,
                start_new_session=True,
                # Servers must not inherit a parent's ignored SIGINT/SIGTERM (as under a background shell).
                restore_signals=True,
            )

    def exit_reason(self) -> str | None:
        """None while running; otherwise its exit status and the end of its log (for start-up errors)."""
        if self._process is None or self._process.poll() is None:
            return None
        return f"{self.name} exited with status {self._process.returncode}; end of {self.log_path}:\n{self.log_tail()}"

    def log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(lines[-LOG_TAIL_LINES:])

    def members(self) -> list[int]:
        """Every live process of its session: the server and all it spawned."""
        return session_members(self.pid) if self._process is not None else []

    def stop(self, stop_signal: signal.Signals = signal.SIGTERM, grace_s: float = 10.0) -> None:
        """Ask the server to stop with `stop_signal`; after `grace_s`, kill whatever of its session is left."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(stop_signal)
            try:
                self._process.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 10
        while members := self.members():
            for pid in members:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: processes {members} survived SIGKILL")
            time.sleep(0.05)
        self._process.wait()
