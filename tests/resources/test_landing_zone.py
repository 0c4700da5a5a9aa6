import datetime as dt
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from telemetry_factory import telemetry_table

from edge_packaging.telemetry_contract import TELEMETRY_SCHEMA, conform_to_telemetry_contract, nullable
from resources.landing_zone import SIDECAR_SUFFIX, LandingZoneResource, UnreadableUpload, read_upload

DAY = dt.date(2026, 11, 2)


@pytest.fixture
def zone(store_root) -> LandingZoneResource:
    return LandingZoneResource(landing_root=store_root.join("landing"), quarantine_root=store_root.join("quarantine"))


def _landing_file(zone: LandingZoneResource, name: str) -> str:
    return zone.source_uri("telemetry", f"date={DAY}", name)


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def test_a_valid_upload_reads_back_under_the_contract(zone, store_root):
    path = store_root.write(_landing_file(zone, "ok.parquet"), _parquet(telemetry_table(5, DAY)))
    upload = read_upload(path, conform_to_telemetry_contract)
    assert upload.table.schema.equals(nullable(TELEMETRY_SCHEMA))  # raw rows: the row rules judge nulls
    assert upload.table.num_rows == 5
    assert upload.extra_columns == ()


def test_extra_columns_are_tolerated_and_reported(zone, store_root):
    table = telemetry_table(3, DAY).append_column("firmware", pa.array(["2.1"] * 3))
    path = store_root.write(_landing_file(zone, "extra.parquet"), _parquet(table))
    upload = read_upload(path, conform_to_telemetry_contract)
    assert upload.table.column_names == TELEMETRY_SCHEMA.names
    assert upload.extra_columns == ("firmware",)


def test_narrower_numeric_types_are_widened_not_refused(zone, store_root):
    table = telemetry_table(3, DAY)
    table = table.set_column(6, "speed_kph", pa.array([10, 20, 30], type=pa.int16()))
    path = store_root.write(_landing_file(zone, "ints.parquet"), _parquet(table))
    assert read_upload(path, conform_to_telemetry_contract).table.column("speed_kph").type == pa.float32()


def _truncated() -> bytes:
    data = _parquet(telemetry_table(20, DAY))
    return data[: len(data) // 2]


def _missing_column() -> bytes:
    return _parquet(telemetry_table(3, DAY).drop_columns(["imu"]))


def _wrong_type() -> bytes:
    table = telemetry_table(3, DAY)
    return _parquet(table.set_column(6, "speed_kph", pa.array(["fast"] * 3)))


def _naive_timestamps() -> bytes:
    table = telemetry_table(3, DAY)
    return _parquet(table.set_column(5, "ts", table.column("ts").cast(pa.timestamp("us"))))


def _no_rows() -> bytes:
    return _parquet(telemetry_table(3, DAY).slice(0, 0))


@pytest.mark.parametrize(
    ("writer", "reason"),
    [
        (lambda: b"", "empty file: 0 bytes"),
        (lambda: b"event_id,device_id\n1,2\n", "unreadable Parquet"),
        (_truncated, "unreadable Parquet"),
        (_no_rows, "empty upload: no rows"),
        (_missing_column, "schema: missing column(s) imu"),
        (_wrong_type, "schema: column speed_kph has type string"),
        (_naive_timestamps, "schema: column ts has no time zone"),
    ],
    ids=["zero-bytes", "not-parquet", "truncated", "no-rows", "missing-column", "wrong-type", "naive-ts"],
)
def test_bad_uploads_are_refused_with_a_one_line_reason(zone, store_root, writer, reason):
    path = store_root.write(_landing_file(zone, "bad.parquet"), writer())
    with pytest.raises(UnreadableUpload) as refused:
        read_upload(path, conform_to_telemetry_contract)
    assert str(refused.value).startswith(reason)
    assert "\n" not in str(refused.value)


def test_quarantine_moves_the_file_beside_a_sidecar_naming_the_reason(zone, store_root):
    path = store_root.write(_landing_file(zone, "bad.parquet"), b"garbage")
    moved = zone.quarantine(path, "telemetry", "unreadable Parquet: magic bytes", run_id="run-1")
    target = moved.quarantined_path
    assert not store_root.exists(path)
    assert target == store_root.join("quarantine", "telemetry", f"date={DAY}", "bad.parquet")
    assert store_root.read(target) == b"garbage"
    sidecar = json.loads(store_root.read(target + SIDECAR_SUFFIX))
    assert sidecar["reason"] == "unreadable Parquet: magic bytes"
    assert sidecar["run_id"] == "run-1"
    assert sidecar["sha256"] == moved.sha256


def test_a_different_file_of_the_same_name_does_not_overwrite_the_quarantined_one(zone, store_root):
    first = store_root.write(_landing_file(zone, "bad.parquet"), b"first")
    kept = zone.quarantine(first, "telemetry", "reason one")
    second = store_root.write(_landing_file(zone, "bad.parquet"), b"second")
    also_kept = zone.quarantine(second, "telemetry", "reason two")
    assert kept.quarantined_path != also_kept.quarantined_path
    assert store_root.read(kept.quarantined_path) == b"first"
    assert store_root.read(also_kept.quarantined_path) == b"second"


def test_quarantining_the_same_bytes_twice_keeps_one_copy_and_both_records(zone, store_root):
    first = zone.quarantine(store_root.write(_landing_file(zone, "bad.parquet"), b"same"), "telemetry", "first reason")
    first_sidecar = store_root.read(first.quarantined_path + SIDECAR_SUFFIX)
    again = zone.quarantine(store_root.write(_landing_file(zone, "bad.parquet"), b"same"), "telemetry", "second reason")

    folder = store_root.join("quarantine", "telemetry", f"date={DAY}")
    names = store_root.names(folder)
    assert again.quarantined_path == first.quarantined_path
    assert [name for name in names if not name.endswith(SIDECAR_SUFFIX)] == ["bad.parquet"]
    assert store_root.read(first.quarantined_path + SIDECAR_SUFFIX) == first_sidecar  # never rewritten
    reasons = sorted(json.loads(store_root.read(f"{folder}/{name}"))["reason"] for name in names if name.endswith(SIDECAR_SUFFIX))
    assert reasons == ["first reason", "second reason"]
    assert not store_root.exists(_landing_file(zone, "bad.parquet"))


def test_evidence_under_a_hashed_name_is_never_replaced(zone, store_root):
    for content in (b"first", b"second", b"second"):
        zone.quarantine(store_root.write(_landing_file(zone, "bad.parquet"), content), "telemetry", f"got {content!r}")
    folder = store_root.join("quarantine", "telemetry", f"date={DAY}")
    kept = {name: store_root.read(f"{folder}/{name}") for name in store_root.names(folder) if not name.endswith(SIDECAR_SUFFIX)}
    assert sorted(kept.values()) == [b"first", b"second"]
    sidecars = [name for name in store_root.names(folder) if name.endswith(SIDECAR_SUFFIX)]
    assert len(sidecars) == 3


def test_uploads_lists_complete_parquet_files_only(zone, store_root):
    for name in ("b.parquet", "a.parquet", ".tmp-c.parquet", "notes.txt"):
        store_root.write(_landing_file(zone, name), b"x")
    store_root.write(zone.source_uri("telemetry", f"date={DAY}", "nested", "d.parquet"), b"x")
    assert zone.uploads("telemetry", f"date={DAY}") == [_landing_file(zone, "a.parquet"), _landing_file(zone, "b.parquet")]
    assert zone.uploads("telemetry", "date=1999-01-01") == []
