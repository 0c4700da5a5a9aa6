"""Misbehaving devices: uploads that the platform must quarantine without losing the good data.

Real fleets send truncated files (a modem drop mid-upload), files of the wrong format (a firmware
writing CSV), schema breaks (a firmware renaming a column), harmless schema additions, corrupt rows
(a dead sensor reading NaN, a clipped window, a saturated accelerometer, a clock stuck on yesterday)
and re-uploads of events already sent. `inject_upload_faults` writes one of each into a day's landing
folder, so the demo and tests can show every path through ingestion and validation.
"""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from fleet_sim.fleet import build_device
from fleet_sim.landing import landing_join, parquet_bytes, write_bytes_atomically, write_parquet_atomically
from fleet_sim.telemetry import TELEMETRY_DIR, device_day_rng, simulate_device_day

FAULTY_DEVICE_INDEX = 90_000
"""Index of the simulated device that misbehaves: far above any fleet size, so it never collides."""


@dataclass(frozen=True)
class InjectedFault:
    """A file written into the landing zone, and what the platform should make of it."""

    path: str | Path
    kind: str
    expected: str
    """'quarantine file', 'flows', or 'quarantine N rows'."""


def _with_column(table: pa.Table, name: str, values: list) -> pa.Table:
    index = table.schema.get_field_index(name)
    return table.set_column(index, table.schema.field(name), pa.array(values, type=table.schema.field(name).type))


def _corrupt_rows(table: pa.Table, day: dt.date) -> pa.Table:
    """Break five rows, each in one way, and leave the rest intact."""
    imu = table.column("imu").to_pylist()
    imu[0] = [float("nan")] * len(imu[0])  # dead sensor
    imu[1] = imu[1][:600]  # clipped window
    imu[2] = list(np.asarray(imu[2]) * 0 + 400.0)  # saturated accelerometer beyond 16 g
    ts = table.column("ts").to_pylist()
    ts[3] = ts[3] - dt.timedelta(days=1)  # clock stuck on yesterday
    labels = table.column("label").to_pylist()
    labels[4] = "near_miss"  # a label this model does not know
    table = _with_column(table, "imu", imu)
    table = _with_column(table, "ts", ts)
    return _with_column(table, "label", labels)


def inject_upload_faults(landing_root: str | Path, day: dt.date, seed: int) -> list[InjectedFault]:
    """Write one upload of each fault kind into `landing_root/telemetry/date=<day>/`.

    The same device uploads its previous day normally and re-sends three of those events on `day`,
    which validation must catch as already ingested. Deterministic for a given seed and day.
    """
    device = build_device(FAULTY_DEVICE_INDEX, seed)
    folder = landing_join(landing_root, TELEMETRY_DIR, f"date={day.isoformat()}")
    rows = simulate_device_day(device, day, device_day_rng(seed, device, day), events_per_device_day=30).table
    previous_day = day - dt.timedelta(days=1)
    previous = simulate_device_day(
        device, previous_day, device_day_rng(seed, device, previous_day), events_per_device_day=30
    ).table
    prefix = f"{device.device_id}-{day:%Y%m%d}"
    faults: list[InjectedFault] = []

    truncated = landing_join(folder, f"{prefix}-truncated.parquet")
    whole = parquet_bytes(rows)
    write_bytes_atomically(whole[: len(whole) // 3], truncated)
    faults.append(InjectedFault(truncated, "truncated upload", "quarantine file"))

    not_parquet = landing_join(folder, f"{prefix}-csv.parquet")
    csv_text = "event_id,device_id,speed_kph\n" + f"{prefix}-x,{device.device_id},42.0\n"
    write_bytes_atomically(csv_text.encode(), not_parquet)
    faults.append(InjectedFault(not_parquet, "not Parquet", "quarantine file"))

    renamed = landing_join(folder, f"{prefix}-renamed-column.parquet")
    write_parquet_atomically(rows.rename_columns([*rows.column_names[:-3], "speed", "imu", "label"]), renamed)
    faults.append(InjectedFault(renamed, "column speed_kph renamed", "quarantine file"))

    extra = landing_join(folder, f"{prefix}-extra-column.parquet")
    firmware = pa.array(["4.2.1"] * 10, type=pa.string())
    write_parquet_atomically(rows.slice(0, 10).append_column("firmware_build", firmware), extra)
    faults.append(InjectedFault(extra, "extra column", "flows"))

    corrupt = landing_join(folder, f"{prefix}-corrupt-rows.parquet")
    write_parquet_atomically(_corrupt_rows(rows.slice(10, 10), day), corrupt)
    faults.append(InjectedFault(corrupt, "corrupt rows", "quarantine 5 rows"))

    first_upload = landing_join(
        landing_root, TELEMETRY_DIR, f"date={previous_day.isoformat()}", f"{device.device_id}-{previous_day:%Y%m%d}.parquet"
    )
    write_parquet_atomically(previous, first_upload)
    faults.append(InjectedFault(first_upload, "yesterday's upload, sent once", "flows"))
    reupload = landing_join(folder, f"{prefix}-reupload.parquet")
    write_parquet_atomically(previous.slice(0, 3), reupload)
    faults.append(InjectedFault(reupload, "re-upload of yesterday's events", "quarantine 3 rows"))
    return faults
