"""A writer killed with SIGKILL in the middle of each kind of write leaves no partial object visible and
loses nothing, and doing the write again completes.

Each case runs the real write in a child process with one function wrapped so that, at the worst moment
(bytes written, not yet published), the child says READY and waits; the test then kills it with SIGKILL.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from resources.lake import LakeResource
from resources.landing_zone import SIDECAR_SUFFIX, LandingZoneResource
from resources.model_registry import ModelRegistry

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parents[1]
PAUSE = textwrap.dedent(
    """
    import sys, time

    def pause_after(function):
        def paused(*args, **kwargs):
            result = function(*args, **kwargs)
            print("READY", flush=True)
            time.sleep(600)
            return result
        return paused
    """
)


def kill_midway(script: str, *args: str) -> None:
    """Run `script` in a child, wait for its READY, SIGKILL it."""
    child = subprocess.Popen(
        [sys.executable, "-c", PAUSE + textwrap.dedent(script), *args],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{TESTS}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline()
        assert line.strip() == "READY", line + child.stderr.read()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL


def test_a_lake_partition_write_killed_before_it_is_published(tmp_path):
    import datetime as dt

    from telemetry_factory import telemetry_table

    lake = LakeResource(uri=str(tmp_path / "lake"))
    old = telemetry_table(3, dt.date(2026, 11, 1))
    lake.write_table(["raw_telemetry"], "2026-11-01", old)

    kill_midway(
        """
        import datetime as dt, pyarrow.parquet as pq
        from telemetry_factory import telemetry_table
        from resources.lake import LakeResource
        pq.write_table = pause_after(pq.write_table)  # the new bytes are complete, not yet moved into place
        LakeResource(uri=sys.argv[1]).write_table(["raw_telemetry"], "2026-11-01", telemetry_table(9, dt.date(2026, 11, 1)))
        """,
        str(tmp_path / "lake"),
    )

    assert lake.read_table(["raw_telemetry"], "2026-11-01").equals(old)
    assert lake.stored_partitions(["raw_telemetry"]) == ["2026-11-01"]
    lake.write_table(["raw_telemetry"], "2026-11-01", telemetry_table(9, dt.date(2026, 11, 1)))
    assert lake.read_table(["raw_telemetry"], "2026-11-01").num_rows == 9


def test_a_registry_promotion_killed_midway(tmp_path):
    registry = ModelRegistry(str(tmp_path / "registry"))
    first = registry.register("harsh_event", {"model.skops": b"one"}, {})
    second = registry.register("harsh_event", {"model.skops": b"two"}, {})
    registry.set_alias("harsh_event", "champion", first.version_id, actor="test", reason="first")

    kill_midway(
        """
        import os
        import resources.model_registry as registry_module
        from resources.model_registry import ModelRegistry
        real_write = os.write
        def half_a_line(fd, data):  # the history line is half on disk when the writer dies
            written = real_write(fd, data[: len(data) // 2])
            print("READY", flush=True)
            time.sleep(600)
            return written
        registry_module.os.write = half_a_line
        ModelRegistry(sys.argv[1]).set_alias("harsh_event", "champion", sys.argv[2], actor="test", reason="killed")
        """,
        str(tmp_path / "registry"),
        second.version_id,
    )

    reopened = ModelRegistry(str(tmp_path / "registry"))
    assert reopened.alias("harsh_event", "champion").version_id == first.version_id
    reopened.set_alias("harsh_event", "champion", second.version_id, actor="test", reason="again")
    assert reopened.alias("harsh_event", "champion").version_id == second.version_id
    assert [event.reason for event in reopened.history("harsh_event")] == ["first", "again"]


def test_an_artifact_write_killed_before_it_is_published(tmp_path):
    from resources.artifact_store import ArtifactStoreResource

    kill_midway(
        """
        import resources.filesystems as filesystems
        from resources.artifact_store import ArtifactStoreResource
        real_move = filesystems.atomic_object
        import contextlib
        @contextlib.contextmanager
        def paused_before_publishing(fs, path):
            with real_move(fs, path) as temp:
                yield temp
                print("READY", flush=True)
                time.sleep(600)
        import resources.artifact_store as artifact_store
        artifact_store.atomic_object = paused_before_publishing
        ArtifactStoreResource(uri=sys.argv[1]).put("bundles", "harsh_event-1.1.0.bundle.tar", b"bundle bytes" * 1000)
        """,
        str(tmp_path / "artifacts"),
    )

    store = ArtifactStoreResource(uri=str(tmp_path / "artifacts"))
    sha256 = hashlib.sha256(b"bundle bytes" * 1000).hexdigest()
    uri = store.uri_of("bundles", sha256, "harsh_event-1.1.0.bundle.tar")
    assert not Path(uri).exists()
    assert store.get(store.put("bundles", "harsh_event-1.1.0.bundle.tar", b"bundle bytes" * 1000).uri) == b"bundle bytes" * 1000


def test_a_quarantine_move_killed_after_its_sidecar_loses_nothing(tmp_path):
    zone = LandingZoneResource(landing_root=str(tmp_path / "landing"), quarantine_root=str(tmp_path / "quarantine"))
    upload = tmp_path / "landing" / "telemetry" / "date=2026-11-01" / "bad.parquet"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"not parquet")

    kill_midway(
        """
        import resources.landing_zone as landing_zone
        landing_zone.write_bytes = pause_after(landing_zone.write_bytes)  # the sidecar is written, the file not moved
        zone = landing_zone.LandingZoneResource(landing_root=sys.argv[1] + "/landing", quarantine_root=sys.argv[1] + "/quarantine")
        zone.quarantine(zone.source_uri("telemetry", "date=2026-11-01", "bad.parquet"), "telemetry", "killed")
        """,
        str(tmp_path),
    )

    assert upload.read_bytes() == b"not parquet"  # still in the landing zone: handled again, never lost
    moved = zone.quarantine(str(upload), "telemetry", "unreadable Parquet")
    assert Path(moved.quarantined_path).read_bytes() == b"not parquet" and not upload.exists()
    sidecars = sorted(path.name for path in Path(moved.quarantined_path).parent.glob(f"*{SIDECAR_SUFFIX}"))
    assert len(sidecars) == 2  # both attempts are on record
    reasons = {json.loads((Path(moved.quarantined_path).parent / name).read_text())["reason"] for name in sidecars}
    assert reasons == {"killed", "unreadable Parquet"}


@pytest.mark.parametrize("killed_after", [1, 2])
def test_a_sensor_tick_killed_midway_reports_the_same_runs_on_the_next_tick(tmp_path, killed_after):
    import datetime as dt

    import dagster as dg
    import pyarrow.parquet as pq
    from feedback_uploads import feedback_table

    from sensors.edge_feedback import build_edge_feedback_sensor

    day = dt.datetime.now(dt.timezone.utc).date()
    for i in range(3):
        path = tmp_path / "landing" / "edge_feedback" / f"date={day}" / f"batch-{i}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(feedback_table(seed=i), path)

    kill_midway(
        f"""
        import dagster as dg
        import sensors.edge_feedback as edge_feedback
        from resources.landing_zone import LandingZoneResource
        checked = []
        real_check = edge_feedback.check_feedback_upload
        def check_then_die(*args):
            checked.append(real_check(*args))
            if len(checked) == {killed_after}:
                print("READY", flush=True)
                time.sleep(600)
            return checked[-1]
        edge_feedback.check_feedback_upload = check_then_die
        partitions = dg.DynamicPartitionsDefinition(name="edge_feedback_batches")
        @dg.asset(partitions_def=partitions)
        def edge_feedback_probe() -> None: ...
        sensor = edge_feedback.build_edge_feedback_sensor(dg.define_asset_job("edge_feedback_job", [edge_feedback_probe]), partitions)
        zone = LandingZoneResource(landing_root=sys.argv[1] + "/landing", quarantine_root=sys.argv[1] + "/quarantine")
        with dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources={{"landing_zone": zone}}) as context:
            sensor(context)
        """,
        str(tmp_path),
    )

    partitions = dg.DynamicPartitionsDefinition(name="edge_feedback_batches")

    @dg.asset(partitions_def=partitions)
    def edge_feedback_probe() -> None: ...

    sensor = build_edge_feedback_sensor(dg.define_asset_job("edge_feedback_job", [edge_feedback_probe]), partitions)
    zone = LandingZoneResource(landing_root=str(tmp_path / "landing"), quarantine_root=str(tmp_path / "quarantine"))
    with dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources={"landing_zone": zone}) as context:
        result = sensor(context)  # the killed tick stored no cursor: the next one starts where it did
    assert sorted(request.partition_key for request in result.run_requests) == ["batch-0", "batch-1", "batch-2"]
