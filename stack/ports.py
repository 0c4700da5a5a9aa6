"""Free TCP ports on 127.0.0.1 and waiting for a server to answer.

Every server of the stack gets ports picked here rather than fixed ones: another stack (a second test
session, `make stack`, a server still shutting down) may hold the defaults.
"""

import random
import socket
import time
from collections.abc import Callable
from typing import TypeVar

HOST = "127.0.0.1"
T = TypeVar("T")


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that are free now (the sockets are held together, then released)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def free_port_range(size: int, low: int = 20_000, high: int = 32_000, attempts: int = 200) -> range:
    """A run of `size` consecutive free ports below Linux's ephemeral range (32768+), so that ports
    the kernel hands out to other sockets do not land in it later (Ray's worker ports need a range)."""
    for _ in range(attempts):
        start = random.randrange(low, high - size)
        candidates = range(start, start + size)
        if all(port_is_free(port) for port in candidates):
            return candidates
    raise RuntimeError(f"no {size} consecutive free ports between {low} and {high}")


def wait_until(
    probe: Callable[[], T],
    what: str,
    timeout_s: float,
    interval_s: float = 0.25,
    still_starting: Callable[[], str | None] = lambda: None,
) -> T:
    """Call `probe` until it returns without raising, and return its result.

    `still_starting` returns a reason to give up early (typically: the server process exited), so a
    crash reports at once with its log instead of after the whole timeout.
    """
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        failure = still_starting()
        if failure:
            raise RuntimeError(f"{what} failed to start: {failure}") from last_error
        try:
            return probe()
        except Exception as error:  # noqa: BLE001 - a failing probe means: not ready yet
            last_error = error
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{what} not ready after {timeout_s:.0f} s; last error: {last_error!r}"
            ) from last_error
        time.sleep(interval_s)
