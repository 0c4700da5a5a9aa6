import datetime as dt
import hashlib
import io
import json
import posixpath
import time

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feedback_uploads import FEEDBACK_SOURCE, feedback_table

from resources.landing_zone import SIDECAR_SUFFIX, LandingZoneResource
from sensors.edge_feedback import (
    FEEDBACK_FILE_TAG,
    FEEDBACK_SHA256_TAG,
    OUTSIDE_DAY_PREFIX,
    SENSOR_NAME,
    TRIGGER_TAG,
    build_edge_feedback_sensor,
)
from sensors.landing_scan import scan_new_uploads

feedback_batches = dg.DynamicPartitionsDefinition(name="edge_feedback_batches")


@dg.asset(partitions_def=feedback_batches)
def edge_feedback_probe(context: dg.AssetExecutionContext) -> str:
    return context.partition_key


feedback_job = dg.define_asset_job("edge_feedback_job", selection=[edge_feedback_probe])


class Daemon:
    """Stands in for the sensor daemon: keeps the cursor, applies partition requests, dedups run keys."""

    def __init__(self, sensor: dg.SensorDefinition, landing_zone: LandingZoneResource):
        self.sensor = sensor
        self.landing_zone = landing_zone
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor: str | None = None
        self.launched_run_keys: set[str] = set()

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources={"landing_zone": self.landing_zone}
        )
        result = self.sensor(context)
        assert isinstance(result, dg.SensorResult)
        for request in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        for run_request in result.run_requests or []:
            assert self.instance.has_dynamic_partition(feedback_batches.name, run_request.partition_key)
        self.launched_run_keys.update(run_request.run_key for run_request in result.run_requests or [])
        self.cursor = result.cursor
        return result

    def restart(self) -> None:
        """A daemon restart: the stored cursor and the instance survive, nothing else does."""
        self.sensor = build_edge_feedback_sensor(feedback_job, feedback_batches)


def added_partitions(result: dg.SensorResult) -> list[str]:
    return [key for request in result.dynamic_partitions_requests or [] for key in request.partition_keys]


def run_keys(result: dg.SensorResult) -> list[str]:
    return [request.run_key for request in result.run_requests or []]


@pytest.fixture
def daemon(landing_zone) -> Daemon:
    return Daemon(build_edge_feedback_sensor(feedback_job, feedback_batches), landing_zone)


def test_the_sensor_is_named_running_and_loads_with_its_job_and_resource(landing_zone):
    sensor = build_edge_feedback_sensor(feedback_job, feedback_batches)
    assert sensor.name == SENSOR_NAME
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 30
    assert sensor.required_resource_keys == {"landing_zone"}
    defs = dg.Definitions(
        assets=[edge_feedback_probe], jobs=[feedback_job], sensors=[sensor], resources={"landing_zone": landing_zone}
    )
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_sensor_def(SENSOR_NAME).job_name == "edge_feedback_job"


def test_first_tick_registers_partitions_and_requests_one_run_per_file(daemon, upload_feedback, landing_zone, store_root, upload_day):
    paths = [upload_feedback(f"batch-{i}.parquet", feedback_table(seed=i)) for i in range(3)]

    result = daemon.tick()

    assert sorted(added_partitions(result)) == ["batch-0", "batch-1", "batch-2"]
    by_partition = {request.partition_key: request for request in result.run_requests}
    assert sorted(by_partition) == ["batch-0", "batch-1", "batch-2"]
    for i, path in enumerate(paths):
        request = by_partition[f"batch-{i}"]
        sha256 = request.tags[FEEDBACK_SHA256_TAG]
        assert request.run_key == f"batch-{i}:{sha256[:16]}"
        assert request.tags[FEEDBACK_FILE_TAG] == f"edge_feedback/date={upload_day}/batch-{i}.parquet"
        assert posixpath.join(landing_zone.landing_root, request.tags[FEEDBACK_FILE_TAG]) == path
        assert request.tags[TRIGGER_TAG] == SENSOR_NAME
        assert sha256 == hashlib.sha256(store_root.read(path)).hexdigest()


def test_second_tick_and_a_restart_with_the_stored_cursor_request_nothing(daemon, upload_feedback):
    for i in range(3):
        upload_feedback(f"batch-{i}.parquet", feedback_table(seed=i))
    assert len(daemon.tick().run_requests) == 3

    second = daemon.tick()
    assert second.run_requests == [] and added_partitions(second) == []

    daemon.restart()
    after_restart = daemon.tick()
    assert after_restart.run_requests == [] and added_partitions(after_restart) == []


def test_a_file_written_after_a_tick_is_picked_up_by_the_next(daemon, upload_feedback):
    upload_feedback("batch-a.parquet", feedback_table(seed=1))
    first = daemon.tick()
    upload_feedback("batch-b.parquet", feedback_table(seed=2))

    second = daemon.tick()

    assert [request.partition_key for request in first.run_requests] == ["batch-a"]
    assert [request.partition_key for request in second.run_requests] == ["batch-b"]
    assert added_partitions(second) == ["batch-b"]


def test_an_identical_re_upload_gives_no_new_run_key(daemon, upload_feedback, store_root):
    path = upload_feedback("batch-a.parquet", feedback_table(seed=1))
    first = daemon.tick()
    original_bytes = store_root.read(path)

    upload_feedback("batch-a.parquet", original_bytes)  # a device retrying the same upload
    second = daemon.tick()

    assert set(run_keys(second)) <= set(run_keys(first))  # the daemon drops a run key it launched
    assert added_partitions(second) == []
    assert daemon.tick().run_requests == []


def test_a_changed_re_upload_is_a_new_version_of_the_same_partition(daemon, upload_feedback):
    upload_feedback("batch-a.parquet", feedback_table(seed=1))
    first = daemon.tick()

    upload_feedback("batch-a.parquet", feedback_table(rows=4, seed=2))
    second = daemon.tick()

    assert len(second.run_requests) == 1
    (old,), (new,) = first.run_requests, second.run_requests
    assert new.partition_key == old.partition_key == "batch-a"
    assert new.run_key != old.run_key
    assert new.tags[FEEDBACK_SHA256_TAG] != old.tags[FEEDBACK_SHA256_TAG]
    assert added_partitions(second) == []  # the partition exists already


def test_a_partition_that_already_exists_is_not_added_again(daemon, upload_feedback):
    daemon.instance.add_dynamic_partitions(feedback_batches.name, ["batch-a"])
    upload_feedback("batch-a.parquet", feedback_table(seed=1))
    upload_feedback("batch-b.parquet", feedback_table(seed=2))

    result = daemon.tick()

    assert added_partitions(result) == ["batch-b"]
    assert sorted(request.partition_key for request in result.run_requests) == ["batch-a", "batch-b"]


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _truncated() -> bytes:
    data = _parquet_bytes(feedback_table(rows=20))
    return data[: len(data) // 2]


BAD_UPLOADS = {
    "not-parquet.parquet": (lambda: b"event_id,device_id\nevt-1,dev-1\n", "unreadable Parquet"),
    "truncated.parquet": (_truncated, "unreadable Parquet"),
    "missing-column.parquet": (lambda: _parquet_bytes(feedback_table().drop_columns(["scores"])), "missing column(s) scores"),
    "wrong-type.parquet": (
        lambda: _parquet_bytes(feedback_table().set_column(10, "inference_ms", pa.array(["fast"] * 3))),
        "column inference_ms has type string",
    ),
    "bad batch id.parquet": (lambda: _parquet_bytes(feedback_table()), "batch id 'bad batch id' must match"),
    "empty.parquet": (lambda: b"", "empty file: 0 bytes"),
    "no-rows.parquet": (lambda: _parquet_bytes(feedback_table().slice(0, 0)), "empty upload: no rows"),
}


def test_each_bad_upload_is_quarantined_with_its_reason_and_the_good_ones_still_run(
    daemon, upload_feedback, landing_zone, store_root, upload_day
):
    good = [upload_feedback(f"good-{i}.parquet", feedback_table(seed=i)) for i in range(2)]
    for name, (content, _) in BAD_UPLOADS.items():
        upload_feedback(name, content())
    unrelated = upload_feedback("notes.txt", b"not an upload")

    result = daemon.tick()

    assert sorted(request.partition_key for request in result.run_requests) == ["good-0", "good-1"]
    assert sorted(added_partitions(result)) == ["good-0", "good-1"]
    assert all(store_root.exists(path) for path in good) and store_root.exists(unrelated)
    quarantine = store_root.join("quarantine", FEEDBACK_SOURCE, f"date={upload_day}")
    for name, (_, reason) in BAD_UPLOADS.items():
        assert not store_root.exists(landing_zone.source_uri(FEEDBACK_SOURCE, f"date={upload_day}", name)), name
        assert store_root.exists(f"{quarantine}/{name}"), name
        sidecar = json.loads(store_root.read(f"{quarantine}/{name}{SIDECAR_SUFFIX}"))
        assert reason in sidecar["reason"], (name, sidecar["reason"])
    assert daemon.tick().run_requests == []


def test_more_new_files_than_the_tick_limit_are_spread_over_ticks_and_none_is_lost(
    landing_zone, upload_feedback, store_root, upload_day
):
    daemon = Daemon(build_edge_feedback_sensor(feedback_job, feedback_batches, max_files_per_tick=3), landing_zone)
    for i in range(10):
        upload_feedback(f"batch-{i:02d}.parquet", feedback_table(seed=i))
    upload_feedback("broken.parquet", b"junk")

    per_tick = []
    for _ in range(6):
        per_tick.append([request.partition_key for request in daemon.tick().run_requests])

    assert [len(keys) for keys in per_tick] == [3, 3, 3, 1, 0, 0]
    requested = [key for keys in per_tick for key in keys]
    assert requested == [f"batch-{i:02d}" for i in range(10)]  # each exactly once, oldest first
    assert sorted(daemon.instance.get_dynamic_partitions(feedback_batches.name)) == sorted(requested)
    assert store_root.exists(store_root.join("quarantine", FEEDBACK_SOURCE, f"date={upload_day}", "broken.parquet"))


def test_a_backlog_older_than_a_fresh_cursor_drains_over_ticks_each_upload_requested_once(
    landing_zone, store_root, upload_day, upload_feedback, capfd
):
    sensor = build_edge_feedback_sensor(feedback_job, feedback_batches, max_files_per_tick=3)
    daemon = Daemon(sensor, landing_zone)
    old_days = [f"date={upload_day - dt.timedelta(days=days_ago)}" for days_ago in (20, 4)]
    backlog = [(day, f"old-{d}-{i}") for d, day in enumerate(old_days) for i in range(4)]
    for day, batch_id in reversed(backlog):  # landed (copied in) in the reverse of key order
        uri = landing_zone.source_uri(FEEDBACK_SOURCE, day, f"{batch_id}.parquet")
        store_root.write(uri, _parquet_bytes(feedback_table(seed=len(batch_id))))
    broken = landing_zone.source_uri(FEEDBACK_SOURCE, old_days[1], "broken.parquet")
    store_root.write(broken, b"junk")
    upload_feedback("today-0.parquet", feedback_table(seed=100))

    per_tick, cursor_bytes = [], []
    for _ in range(6):
        per_tick.append([request.partition_key for request in daemon.tick().run_requests])
        cursor_bytes.append(len(daemon.cursor))

    requested = [key for keys in per_tick for key in keys]
    sweep_order = sorted((f"{day}/{batch_id}", batch_id) for day, batch_id in backlog)
    # Each once, the backlog by key; three uploads a tick, of which the second tick quarantines one.
    assert requested == [batch_id for _, batch_id in sweep_order] + ["today-0"]
    assert [len(keys) for keys in per_tick] == [3, 2, 3, 1, 0, 0]
    assert len(daemon.launched_run_keys) == len(requested)
    assert sorted(daemon.instance.get_dynamic_partitions(feedback_batches.name)) == sorted(requested)
    quarantine = store_root.join("quarantine", FEEDBACK_SOURCE, old_days[1])
    assert not store_root.exists(broken)
    sidecars = [name for name in store_root.names(quarantine) if name.endswith(SIDECAR_SUFFIX)]
    assert sidecars == [f"broken.parquet{SIDECAR_SUFFIX}"]
    assert max(cursor_bytes) < 300 and "sweep" not in json.loads(daemon.cursor)
    summaries = [line for line in capfd.readouterr().err.splitlines() if "edge feedback:" in line]
    assert "the sweep of uploads older than the cursor goes on" in summaries[0]
    assert "sweep" not in summaries[-1]


def test_a_tick_out_of_time_still_takes_one_file_and_leaves_the_rest_for_later(landing_zone, upload_feedback):
    daemon = Daemon(build_edge_feedback_sensor(feedback_job, feedback_batches, tick_budget_seconds=0.0), landing_zone)
    for i in range(3):
        upload_feedback(f"batch-{i}.parquet", feedback_table(seed=i))

    per_tick = [[request.partition_key for request in daemon.tick().run_requests] for _ in range(4)]

    assert per_tick == [["batch-0"], ["batch-1"], ["batch-2"], []]


def test_a_file_that_vanishes_before_it_is_read_is_skipped_not_quarantined(
    daemon, upload_feedback, landing_zone, store_root, monkeypatch
):
    import sensors.edge_feedback as edge_feedback

    upload_feedback("batch-a.parquet", feedback_table(seed=1))
    upload_feedback("batch-b.parquet", feedback_table(seed=2))
    real_check = edge_feedback.check_feedback_upload

    def vanish_a_first(listed, lister, uri: str, source: str):
        if uri.endswith("/batch-a.parquet"):
            store_root.delete(uri)
        return real_check(listed, lister, uri, source)

    monkeypatch.setattr(edge_feedback, "check_feedback_upload", vanish_a_first)
    result = daemon.tick()

    assert [request.partition_key for request in result.run_requests] == ["batch-b"]
    assert not store_root.exists(store_root.join("quarantine"))


def test_an_upload_replaced_while_it_is_read_waits_for_its_new_version(
    daemon, upload_feedback, landing_zone, store_root, monkeypatch
):
    import sensors.edge_feedback as edge_feedback

    upload_feedback("batch-a.parquet", feedback_table(seed=1))
    real_read = edge_feedback.read_bytes
    replaced = []

    def read_while_the_device_re_uploads(uri: str):
        if not replaced:
            replaced.append(upload_feedback(posixpath.basename(uri), feedback_table(rows=5, seed=2)))
        return real_read(uri)

    monkeypatch.setattr(edge_feedback, "read_bytes", read_while_the_device_re_uploads)
    first = daemon.tick()
    second = daemon.tick()

    assert first.run_requests == []
    assert not store_root.exists(store_root.join("quarantine"))
    (request,) = second.run_requests
    assert request.partition_key == "batch-a"
    assert request.tags[FEEDBACK_SHA256_TAG] == hashlib.sha256(store_root.read(replaced[0])).hexdigest()


def test_an_upload_outside_a_day_prefix_is_quarantined_not_left_unseen(daemon, upload_feedback, landing_zone, store_root):
    upload_feedback("batch-a.parquet", feedback_table(seed=1))
    loose = store_root.write(landing_zone.source_uri(FEEDBACK_SOURCE, "batch-b.parquet"), _parquet_bytes(feedback_table(seed=2)))

    result = daemon.tick()

    assert [request.partition_key for request in result.run_requests] == ["batch-a"]
    assert not store_root.exists(loose)
    sidecar = json.loads(store_root.read(store_root.join("quarantine", FEEDBACK_SOURCE, f"batch-b.parquet{SIDECAR_SUFFIX}")))
    assert sidecar["reason"] == OUTSIDE_DAY_PREFIX


def test_a_fresh_cursor_sweeps_the_history_once_then_ticks_list_only_the_latest_days(
    landing_zone, store_root, upload_day, monkeypatch
):
    old_day = upload_day - dt.timedelta(days=30)
    for i in range(3):
        store_root.write(landing_zone.source_uri(FEEDBACK_SOURCE, f"date={old_day}", f"old-{i}.parquet"), b"x")
    lister = landing_zone.lister(FEEDBACK_SOURCE)
    listed_days, sweeps = [], []
    real_list_uploads, real_list_uploads_after = type(lister).list_uploads, type(lister).list_uploads_after

    def recording(self, since_day):
        listed_days.append(since_day)
        return real_list_uploads(self, since_day)

    def recording_sweep(self, after_key):
        sweeps.append(after_key)
        return real_list_uploads_after(self, after_key)

    monkeypatch.setattr(type(lister), "list_uploads", recording)
    monkeypatch.setattr(type(lister), "list_uploads_after", recording_sweep)
    first = scan_new_uploads(lister, None, time.time_ns(), limit=100)
    settled = scan_new_uploads(lister, first.next_cursor, time.time_ns() + 10**12, limit=100)

    assert [listed.key for listed in first.new_files] == [f"date={old_day}/old-{i}.parquet" for i in range(3)]
    assert not first.sweeping and settled.new_files == []
    assert sweeps == [None]  # the history is listed once, by the sweep of the fresh cursor
    assert listed_days and all(day >= upload_day - dt.timedelta(days=1) for day in listed_days)


def test_extra_columns_are_accepted_and_the_tick_is_summarised_in_one_line(daemon, upload_feedback, capfd):
    upload_feedback("batch-a.parquet", feedback_table(seed=1).append_column("firmware", pa.array(["2.1"] * 3)))
    upload_feedback("broken.parquet", b"junk")
    capfd.readouterr()

    result = daemon.tick()

    assert [request.partition_key for request in result.run_requests] == ["batch-a"]
    summaries = [line for line in capfd.readouterr().err.splitlines() if "edge feedback:" in line]
    assert len(summaries) == 1
    assert "2 new, 1 accepted (3 rows), 1 quarantined, 0 skipped, 0 left for the next tick" in summaries[0]
