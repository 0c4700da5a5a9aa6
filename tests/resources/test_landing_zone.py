import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from telemetry_factory import telemetry_table

from edge_packaging.telemetry_contract import TELEMETRY_SCHEMA, conform_to_telemetry_contract
from resources.landing_zone import SIDECAR_SUFFIX, LandingZoneResource, UnreadableUpload, read_upload

DAY = dt.date(2026, 11, 2)


@pytest.fixture
def zone(tmp_path: Path) -> LandingZoneResource:
    return LandingZoneResource(landing_root=str(tmp_path / "landing"), quarantine_root=str(tmp_path / "quarantine"))


def _landing_file(zone: LandingZoneResource, name: str) -> Path:
    path = Path(zone.landing_root, "telemetry", f"date={DAY}", name)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_a_valid_upload_reads_back_under_the_contract(zone):
    path = _landing_file(zone, "ok.parquet")
    pq.write_table(telemetry_table(5, DAY), path)
    upload = read_upload(path, conform_to_telemetry_contract)
    assert upload.table.schema.equals(TELEMETRY_SCHEMA)
    assert upload.table.num_rows == 5
    assert upload.extra_columns == ()


def test_extra_columns_are_tolerated_and_reported(zone):
    path = _landing_file(zone, "extra.parquet")
    table = telemetry_table(3, DAY).append_column("firmware", pa.array(["2.1"] * 3))
    pq.write_table(table, path)
    upload = read_upload(path, conform_to_telemetry_contract)
    assert upload.table.column_names == TELEMETRY_SCHEMA.names
    assert upload.extra_columns == ("firmware",)


def test_narrower_numeric_types_are_widened_not_refused(zone):
    path = _landing_file(zone, "ints.parquet")
    table = telemetry_table(3, DAY)
    table = table.set_column(6, "speed_kph", pa.array([10, 20, 30], type=pa.int16()))
    pq.write_table(table, path)
    assert read_upload(path, conform_to_telemetry_contract).table.column("speed_kph").type == pa.float32()


def _write_truncated(path: Path) -> None:
    pq.write_table(telemetry_table(20, DAY), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _write_missing_column(path: Path) -> None:
    pq.write_table(telemetry_table(3, DAY).drop_columns(["imu"]), path)


def _write_wrong_type(path: Path) -> None:
    table = telemetry_table(3, DAY)
    pq.write_table(table.set_column(6, "speed_kph", pa.array(["fast"] * 3)), path)


def _write_naive_timestamps(path: Path) -> None:
    table = telemetry_table(3, DAY)
    pq.write_table(table.set_column(5, "ts", table.column("ts").cast(pa.timestamp("us"))), path)


def _write_no_rows(path: Path) -> None:
    pq.write_table(telemetry_table(3, DAY).slice(0, 0), path)


@pytest.mark.parametrize(
    ("writer", "reason"),
    [
        (lambda path: path.write_bytes(b""), "empty file: 0 bytes"),
        (lambda path: path.write_text("event_id,device_id\n1,2\n"), "unreadable Parquet"),
        (_write_truncated, "unreadable Parquet"),
        (_write_no_rows, "empty upload: no rows"),
        (_write_missing_column, "schema: missing column(s) imu"),
        (_write_wrong_type, "schema: column speed_kph has type string"),
        (_write_naive_timestamps, "schema: column ts has no time zone"),
    ],
    ids=["zero-bytes", "not-parquet", "truncated", "no-rows", "missing-column", "wrong-type", "naive-ts"],
)
def test_bad_uploads_are_refused_with_a_one_line_reason(zone, writer, reason):
    path = _landing_file(zone, "bad.parquet")
    writer(path)
    with pytest.raises(UnreadableUpload) as refused:
        read_upload(path, conform_to_telemetry_contract)
    assert str(refused.value).startswith(reason)
    assert "\n" not in str(refused.value)


def test_quarantine_moves_the_file_beside_a_sidecar_naming_the_reason(zone):
    path = _landing_file(zone, "bad.parquet")
    path.write_bytes(b"garbage")
    moved = zone.quarantine(path, "telemetry", "unreadable Parquet: magic bytes", run_id="run-1")
    target = Path(moved.quarantined_path)
    assert not path.exists()
    assert target == Path(zone.quarantine_root, "telemetry", f"date={DAY}", "bad.parquet")
    assert target.read_bytes() == b"garbage"
    sidecar = json.loads(target.with_name(target.name + SIDECAR_SUFFIX).read_text())
    assert sidecar["reason"] == "unreadable Parquet: magic bytes"
    assert sidecar["run_id"] == "run-1"
    assert sidecar["sha256"] == moved.sha256


def test_a_different_file_of_the_same_name_does_not_overwrite_the_quarantined_one(zone):
    first = _landing_file(zone, "bad.parquet")
    first.write_bytes(b"first")
    kept = zone.quarantine(first, "telemetry", "reason one")
    second = _landing_file(zone, "bad.parquet")
    second.write_bytes(b"second")
    also_kept = zone.quarantine(second, "telemetry", "reason two")
    assert kept.quarantined_path != also_kept.quarantined_path
    assert Path(kept.quarantined_path).read_bytes() == b"first"
    assert Path(also_kept.quarantined_path).read_bytes() == b"second"


def test_uploads_lists_complete_parquet_files_only(zone):
    for name in ("b.parquet", "a.parquet", ".tmp-c.parquet", "notes.txt"):
        _landing_file(zone, name).write_bytes(b"x")
    assert [p.name for p in zone.uploads("telemetry", f"date={DAY}")] == ["a.parquet", "b.parquet"]
    assert zone.uploads("telemetry", "date=1999-01-01") == []
