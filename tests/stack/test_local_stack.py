"""The stack is production-like: credentials are enforced, Dagster keeps its runs in PostgreSQL, and
`python -m stack` stops every server it started."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from stack.local_stack import LocalStack
from stack.processes import alive, session_members

pytestmark = [pytest.mark.stack, pytest.mark.slow]  # real servers take seconds to start
REPO_ROOT = Path(__file__).parents[2]


def test_s3_refuses_a_wrong_secret_and_serves_the_right_one(local_stack: LocalStack):
    wrong = local_stack.s3.filesystem(secret_access_key="not-the-secret")
    with (
        pytest.raises(OSError, match="SIGNATURE_DOES_NOT_MATCH|ACCESS_DENIED|AccessDenied"),
        wrong.open_output_stream("fleetml/probe/wrong.txt") as stream,
    ):
        stream.write(b"should not land")
    right = local_stack.s3.filesystem()
    with right.open_output_stream("fleetml/probe/right.txt") as stream:
        stream.write(b"landed")
    assert right.open_input_stream("fleetml/probe/right.txt").read() == b"landed"
    assert right.get_file_info("fleetml/probe/wrong.txt").type.name == "NotFound"


def test_postgres_refuses_a_wrong_password(local_stack: LocalStack):
    import psycopg2

    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(local_stack.postgres.url(password="not-the-password"), connect_timeout=5)
    with (
        psycopg2.connect(local_stack.postgres.url(), connect_timeout=5) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("select current_user, current_database()")
        assert cursor.fetchone() == ("dagster", "dagster")


@dg.asset
def stack_probe() -> int:
    return 42


def test_dagster_keeps_runs_and_events_in_postgres(
    local_stack: LocalStack, stack_environment: dict[str, str]
):
    """The generated dagster.yaml, with credentials from the environment, stores a run that a second
    instance (another process, in production) reads back, and the rows are in PostgreSQL."""
    import psycopg2
    from dagster_postgres import PostgresRunStorage

    instance = dg.DagsterInstance.from_config(str(local_stack.dagster_home))
    assert isinstance(instance.run_storage, PostgresRunStorage)
    result = dg.materialize([stack_probe], instance=instance)
    assert result.success

    reader = dg.DagsterInstance.from_config(str(local_stack.dagster_home))
    assert result.run_id in [run.run_id for run in reader.get_runs()]
    materialization = reader.get_latest_materialization_event(dg.AssetKey("stack_probe"))
    assert materialization is not None and materialization.run_id == result.run_id
    with psycopg2.connect(local_stack.postgres.url()) as connection, connection.cursor() as cursor:
        cursor.execute("select count(*) from event_logs where run_id = %s", (result.run_id,))
        assert cursor.fetchone()[0] > 0


def test_python_m_stack_prints_exports_and_stops_everything_on_sigterm(tmp_path: Path):
    """The `make stack` entry point: exports for a shell, and nothing left running after SIGTERM, even
    when started by a process that ignores SIGTERM (an ignored signal is inherited across exec)."""
    pids: list[int] = []
    cli = subprocess.Popen(
        [sys.executable, "-m", "stack"],
        cwd=REPO_ROOT,
        env={**os.environ, "FLEETML_HOME": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN),
    )
    try:
        exports = {}
        for line in cli.stdout:
            name, _, value = line.removeprefix("export ").strip().partition("=")
            exports[name] = value
            if name == "DAGSTER_HOME":  # the last line
                break
        assert exports["FLEETML_ENV"] == "prod"
        assert exports["FLEETML_LAKE_URI"] == "s3://fleetml/lake"
        assert exports["FLEETML_RAY_ADDRESS"].startswith("ray://127.0.0.1:")
        assert exports["FLEETML_SPARK_MASTER"].startswith("spark://127.0.0.1:")
        assert Path(exports["DAGSTER_HOME"], "dagster.yaml").is_file()
        # Each server leads a session of its own, started by the CLI process.
        leaders = [pid for pid in session_members(os.getsid(cli.pid)) if pid != cli.pid]
        assert leaders == [], "servers must not share the CLI's session"
        servers = [
            int(p.name)
            for p in Path("/proc").iterdir()
            if p.name.isdigit() and _parent(int(p.name)) == cli.pid
        ]
        pids = [pid for leader in servers for pid in session_members(leader)]
        assert len(servers) == 5, servers  # weed, postgres, ray start, spark master, spark worker
    finally:
        cli.send_signal(signal.SIGTERM)
        try:
            _, stderr = cli.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            cli.kill()
            for pid in alive(pids):  # a failed stop must not leave the servers to the next test
                os.kill(pid, signal.SIGKILL)
            raise
    assert cli.returncode == 0, stderr
    assert "stack stopped" in stderr
    assert alive(pids) == []


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None
