import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edge_packaging.telemetry_contract import (
    HARSH_EVENT_CLASSES,
    TELEMETRY_SCHEMA,
    conform_to_telemetry_contract,
    imu_windows,
)
from fleet_sim import landing
from fleet_sim.fleet import build_device
from fleet_sim.telemetry import device_day_rng, simulate_device_day, simulate_telemetry, upload_path

START = dt.date(2026, 11, 1)


def simulate(root: Path, seed: int = 7, devices: int = 3, days: int = 2, **options):
    return simulate_telemetry(
        root, START, days=days, devices=devices, seed=seed, events_per_device_day=8.0, **options
    )


def files_by_name(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def test_layout_one_file_per_device_per_day(tmp_path):
    summary = simulate(tmp_path)
    telemetry = tmp_path / "telemetry"
    assert summary.telemetry_dir == telemetry
    assert sorted(path.name for path in telemetry.iterdir()) == ["date=2026-11-01", "date=2026-11-02"]
    assert sorted(path.name for path in (telemetry / "date=2026-11-02").iterdir()) == [
        "dev-00000-20261102.parquet",
        "dev-00001-20261102.parquet",
        "dev-00002-20261102.parquet",
    ]
    assert summary.files == 6


def test_same_seed_same_bytes_and_another_seed_differs(tmp_path):
    simulate(tmp_path / "a", seed=7)
    simulate(tmp_path / "b", seed=7)
    simulate(tmp_path / "c", seed=8)
    first, again, other = (files_by_name(tmp_path / name) for name in "abc")
    assert first == again
    assert first.keys() == other.keys()
    assert all(first[name] != other[name] for name in first)


def test_a_device_day_does_not_depend_on_the_rest_of_the_run(tmp_path):
    simulate(tmp_path / "full", devices=3, days=2)
    second_day = START + dt.timedelta(days=1)
    simulate_telemetry(tmp_path / "one", second_day, days=1, devices=1, seed=7, events_per_device_day=8.0)
    name = "telemetry/date=2026-11-02/dev-00000-20261102.parquet"
    assert files_by_name(tmp_path / "one")[name] == files_by_name(tmp_path / "full")[name]


def test_uploads_conform_to_the_telemetry_contract(tmp_path):
    summary = simulate(tmp_path, days=2, devices=3)
    tables = [(path, pq.read_table(path)) for path in sorted(tmp_path.rglob("*.parquet"))]
    for path, table in tables:
        assert table.schema.equals(TELEMETRY_SCHEMA)
        assert conform_to_telemetry_contract(table).num_rows == table.num_rows
        day = dt.date.fromisoformat(path.parent.name.removeprefix("date="))
        midnight = dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc)
        ts = table.column("ts").to_pylist()
        assert all(midnight <= stamp < midnight + dt.timedelta(days=1) for stamp in ts)
        assert ts == sorted(ts)
        device_id = path.name.removesuffix(f"-{day:%Y%m%d}.parquet")
        assert set(table.column("device_id").to_pylist()) == {device_id}
        assert table.column("event_id").to_pylist()[0] == f"{device_id}-{day:%Y%m%d}-00000"
        assert imu_windows(table.column("imu")).shape == (table.num_rows, 6, 200)
        assert set(table.column("label").drop_null().to_pylist()) <= set(HARSH_EVENT_CLASSES)
    everything = pa.concat_tables(table for _, table in tables)
    event_ids = everything.column("event_id").to_pylist()
    assert len(set(event_ids)) == len(event_ids) == summary.windows
    assert summary.labelled == everything.num_rows - everything.column("label").null_count
    assert sum(summary.class_counts.values()) == summary.windows


def test_device_day_table_reports_the_truth_beside_the_reviewed_labels():
    device = build_device(4, seed=7)
    upload = simulate_device_day(device, START, device_day_rng(7, device, START), events_per_device_day=300.0)
    table = upload.table
    assert table.schema.equals(TELEMETRY_SCHEMA)
    assert len(upload.true_class) == table.num_rows
    assert set(table.column("hardware_rev").to_pylist()) == {device.hardware_rev}
    assert set(table.column("vehicle_class").to_pylist()) == {device.vehicle_class}
    labels = np.array(table.column("label").to_pylist(), dtype=object)
    reviewed = labels != None  # noqa: E711 - elementwise comparison on an object array
    assert 0.5 < reviewed.mean() < 0.7
    assert np.mean(labels[reviewed] == upload.true_class[reviewed]) > 0.93
    speeds = table.column("speed_kph").to_numpy()
    assert (speeds >= 0).all() and (speeds < 150).all()


def test_a_quiet_device_day_uploads_nothing(tmp_path):
    summary = simulate_telemetry(tmp_path, START, days=1, devices=2, seed=1, events_per_device_day=0.0)
    assert summary.files == summary.windows == 0
    assert not list(tmp_path.rglob("*.parquet"))


def test_writes_leave_no_temp_files(tmp_path):
    simulate(tmp_path)
    assert not [path for path in tmp_path.rglob("*") if path.name.startswith(".")]


def test_a_failed_write_leaves_neither_the_upload_nor_its_temp_file(tmp_path, monkeypatch):
    write_bytes = Path.write_bytes

    def write_half_then_fail(self, data):
        write_bytes(self, data[:20])
        raise OSError("disk full")

    monkeypatch.setattr(landing.Path, "write_bytes", write_half_then_fail)
    device = build_device(0, seed=1)
    path = upload_path(tmp_path / "telemetry", device, START)
    table = simulate_device_day(device, START, device_day_rng(1, device, START)).table
    with pytest.raises(OSError, match="disk full"):
        landing.write_parquet_atomically(table, path)
    assert list(path.parent.iterdir()) == []


def test_progress_bar_auto_and_forced(tmp_path, capsys):
    simulate(tmp_path / "quiet", devices=1, days=1)
    assert capsys.readouterr().err == ""
    simulate(tmp_path / "forced", devices=1, days=1, progress=True)
    assert "device-day" in capsys.readouterr().err


def test_revisions_and_season_reach_the_uploads(tmp_path):
    simulate(tmp_path / "r5", devices=2, days=1, revisions=("vg-r5",))
    uploads = (tmp_path / "r5").rglob("*.parquet")
    revisions = {pq.read_table(path).column("hardware_rev")[0].as_py() for path in uploads}
    assert revisions == {"vg-r5"}
    default = simulate(tmp_path / "default", devices=4, days=3)
    winter = simulate(tmp_path / "winter", devices=4, days=3, season="winter")
    assert winter.class_counts["benign"] > 1.5 * default.class_counts["benign"]
    with pytest.raises(ValueError, match="unknown season"):
        simulate(tmp_path / "bad", season="monsoon")
