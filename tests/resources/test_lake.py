import datetime as dt

import pytest
from telemetry_factory import telemetry_table

from resources.lake import LakeResource


def test_write_then_read_round_trips_and_replaces_whole(tmp_path):
    lake = LakeResource(uri=str(tmp_path / "lake"))
    table = telemetry_table(4, dt.date(2026, 11, 1))
    stored = lake.write_table(["harsh_event", "x"], "2026-11-01", table)
    assert stored.rows == 4 and stored.size_bytes > 0
    assert lake.read_table(["harsh_event", "x"], "2026-11-01").equals(table)
    lake.write_table(["harsh_event", "x"], "2026-11-01", table.slice(0, 2))
    assert lake.read_table(["harsh_event", "x"], "2026-11-01").num_rows == 2
    assert lake.stored_partitions(["harsh_event", "x"]) == ["2026-11-01"]
    assert not [p for p in (tmp_path / "lake" / "harsh_event" / "x").iterdir() if p.name.startswith(".")]


def test_reading_a_partition_never_written_names_what_to_materialize(tmp_path):
    lake = LakeResource(uri=str(tmp_path / "lake"))
    with pytest.raises(FileNotFoundError, match="materialize it first"):
        lake.read_table(["raw_telemetry"], "2026-11-01")
    assert lake.stored_partitions(["raw_telemetry"]) == []
