"""`python -m stack` (`make stack`): the production stack on 127.0.0.1 until Ctrl-C or SIGTERM.

It prints the `export` lines that point a shell (`make dev`, `dagster`, a test run) at the stack.
Data and credentials persist under `$FLEETML_HOME/stack` (default `.fleetml/stack`), so a restart
serves the same buckets and Dagster history to the same credentials, on fresh ports.
"""

import os
import shlex
import signal
import sys
import time
from pathlib import Path

from stack.local_stack import LocalStack, exit_on_signal


def main() -> int:
    directory = Path(os.environ.get("FLEETML_HOME", ".fleetml")).resolve() / "stack"
    directory.mkdir(parents=True, exist_ok=True)
    # Started from a background shell (or a process that ignores them), SIGINT and SIGTERM may arrive
    # ignored, and an ignored SIGTERM would leave every server running: this command owns both.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, exit_on_signal)
    print(f"starting the stack under {directory} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    stack = LocalStack(directory)
    try:
        stack.start()
        figures = ", ".join(f"{name} {seconds} s" for name, seconds in stack.startup_seconds.items())
        print(f"stack ready in {time.perf_counter() - started:.1f} s ({figures})", file=sys.stderr)
        for name, value in stack.environment().items():
            print(f"export {name}={shlex.quote(value)}")
        print("# Ctrl-C or SIGTERM stops every server", file=sys.stderr, flush=True)
        sys.stdout.flush()
        signal.pause()  # SIGTERM becomes SystemExit (LocalStack), Ctrl-C KeyboardInterrupt
    except (KeyboardInterrupt, SystemExit):  # the asked-for way to stop
        pass
    finally:
        stopping = time.perf_counter()
        stack.stop()
        print(f"stack stopped in {time.perf_counter() - stopping:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
