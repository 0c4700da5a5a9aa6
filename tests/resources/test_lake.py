import datetime as dt

import pyarrow as pa
import pytest
from telemetry_factory import telemetry_table

from resources.filesystems import atomic_object, filesystem_and_path
from resources.lake import LakeResource


def test_write_then_read_round_trips_and_replaces_whole(store_root):
    lake = LakeResource(uri=store_root.join("lake"))
    table = telemetry_table(4, dt.date(2026, 11, 1))
    stored = lake.write_table(["harsh_event", "x"], "2026-11-01", table)
    assert stored.rows == 4 and stored.size_bytes > 0
    assert stored.uri == store_root.join("lake", "harsh_event", "x", "2026-11-01.parquet")
    assert lake.read_table(["harsh_event", "x"], "2026-11-01").equals(table)
    lake.write_table(["harsh_event", "x"], "2026-11-01", table.slice(0, 2))
    assert lake.read_table(["harsh_event", "x"], "2026-11-01").num_rows == 2
    assert lake.stored_partitions(["harsh_event", "x"]) == ["2026-11-01"]
    assert store_root.names(store_root.join("lake", "harsh_event", "x")) == ["2026-11-01.parquet"]


def test_reading_a_partition_never_written_names_what_to_materialize(store_root):
    lake = LakeResource(uri=store_root.join("lake"))
    with pytest.raises(FileNotFoundError, match="materialize it first"):
        lake.read_table(["raw_telemetry"], "2026-11-01")
    assert lake.stored_partitions(["raw_telemetry"]) == []


def test_a_writer_that_fails_midway_leaves_the_old_object_whole_and_no_partial_one(store_root):
    target = store_root.join("objects", "report.json")
    store_root.write(target, b"old version")
    fs, path = filesystem_and_path(target)

    with pytest.raises(RuntimeError, match="writer died"):
        with atomic_object(fs, path) as temp_path, fs.open_output_stream(temp_path) as stream:
            stream.write(b"new vers")
            raise RuntimeError("writer died")

    assert store_root.read(target) == b"old version"
    assert store_root.names(store_root.join("objects")) == ["report.json"]



@pytest.mark.parametrize("partition_key", ["../../escaped", "/etc/passwd", "a/b", "..", ""])
def test_a_partition_key_cannot_leave_the_lake(store_root, partition_key):
    lake = LakeResource(uri=store_root.join("lake"))
    table = telemetry_table(2, dt.date(2026, 11, 1))
    if partition_key:
        with pytest.raises(ValueError, match="partition key"):
            lake.write_table(["raw_telemetry"], partition_key, table)
    with pytest.raises(ValueError, match="asset key part"):
        lake.write_table(["..", "outside"], "2026-11-01", table)
    assert store_root.names(store_root.uri) == []


def test_a_streamed_partition_is_written_in_bounded_row_groups_and_read_back_in_them(store_root, monkeypatch):
    import resources.lake as lake_module

    monkeypatch.setattr(lake_module, "ROW_GROUP_ROWS", 10)
    lake = LakeResource(uri=store_root.join("lake"))
    day = dt.date(2026, 11, 1)
    uploads = [telemetry_table(rows, day, seed=rows, prefix=f"u{rows}") for rows in (3, 4, 2, 25, 1, 6)]

    with lake.partition_writer(["raw_telemetry"], "2026-11-01", uploads[0].schema) as writer:
        for upload in uploads:
            writer.write(upload)

    assert writer.stored.rows == 41 and writer.stored.uri == lake.table_uri(["raw_telemetry"], "2026-11-01")
    with lake.open_partition(["raw_telemetry"], "2026-11-01") as partition:
        groups = list(partition.row_groups())
        assert partition.num_rows == 41
    # Small uploads are gathered up to a row group; one of half a row group or more is written at once.
    assert [group.num_rows for group in groups] == [9, 10, 10, 5, 7]
    assert pa.concat_tables(groups).equals(pa.concat_tables(uploads))


def test_a_streamed_write_that_fails_midway_leaves_the_old_partition_whole(store_root):
    lake = LakeResource(uri=store_root.join("lake"))
    old = telemetry_table(3, dt.date(2026, 11, 1))
    lake.write_table(["raw_telemetry"], "2026-11-01", old)

    with (
        pytest.raises(RuntimeError, match="worker died"),
        lake.partition_writer(["raw_telemetry"], "2026-11-01", old.schema) as writer,
    ):
        writer.write(telemetry_table(20_000, dt.date(2026, 11, 1)))  # row groups already written
        raise RuntimeError("worker died")

    assert lake.read_table(["raw_telemetry"], "2026-11-01").equals(old)
    assert store_root.names(store_root.join("lake", "raw_telemetry")) == ["2026-11-01.parquet"]
