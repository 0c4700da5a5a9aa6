"""Telemetry uploads of the simulated fleet: one Parquet file per device per day in the landing zone.

A device-day is the unit of work and of randomness: its generator is derived from (seed, device,
day), so a file's bytes do not depend on which other devices or days are simulated, or in which
order, and memory stays bounded by one device-day however large the run.
"""

import datetime as dt
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from edge_packaging.telemetry_contract import HARSH_EVENT_CLASSES, TELEMETRY_SCHEMA, imu_column
from fleet_sim.events import check_season, draw_event_kinds, event_class, synthesize_motion
from fleet_sim.fleet import DEFAULT_REVISIONS, Device, build_fleet
from fleet_sim.labels import review_labels
from fleet_sim.landing import landing_join, write_parquet_atomically
from fleet_sim.sensor import gps_speed_kph, measure

TELEMETRY_DIR = "telemetry"
# Keeps telemetry's random streams apart from the fleet's, which derive from the same seed.
_TELEMETRY_STREAM = 0x7E1E
# Below this many device-days a run takes a second or two and a progress bar is noise.
_AUTO_PROGRESS_DEVICE_DAYS = 200
_MICROS_PER_DAY = 86_400_000_000
_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class DeviceDay:
    """One device's events of one day: the upload table, and the true class of each row (the
    label column holds only reviewed, occasionally wrong, classes)."""

    table: pa.Table
    true_class: np.ndarray


@dataclass(frozen=True)
class TelemetrySummary:
    """What a simulation run wrote: figures for a log line, true class counts for a sanity check."""

    telemetry_dir: str | Path
    files: int
    windows: int
    labelled: int
    class_counts: dict[str, int]


def device_day_rng(seed: int, device: Device, day: dt.date) -> np.random.Generator:
    """The generator for one device's day of telemetry under `seed`."""
    return np.random.default_rng([seed, _TELEMETRY_STREAM, device.index, day.toordinal()])


def upload_path(telemetry_dir: str | Path, device: Device, day: dt.date) -> str | Path:
    """Where a device's upload for `day` lands: `date=YYYY-MM-DD/<device_id>-<YYYYMMDD>.parquet`."""
    return landing_join(telemetry_dir, f"date={day.isoformat()}", f"{device.device_id}-{day:%Y%m%d}.parquet")


def simulate_device_day(
    device: Device,
    day: dt.date,
    rng: np.random.Generator,
    *,
    events_per_device_day: float = 40.0,
    season: str = "default",
) -> DeviceDay:
    """The events `device` triggers on `day`, as a table conforming to `TELEMETRY_SCHEMA`.

    Rows are in time order; `event_id` is `<device_id>-<YYYYMMDD>-<seq>`, unique across the fleet.
    """
    kinds = draw_event_kinds(rng, events_per_device_day, season)
    count = len(kinds)
    micros_into_day = np.sort(rng.integers(0, _MICROS_PER_DAY, size=count))
    motion = synthesize_motion(kinds, device.vehicle_class, rng, season)
    imu = measure(motion.accel_mps2, motion.gyro_radps, device, rng)
    speed_kph = gps_speed_kph(motion.speed_kph, rng)
    true_class = event_class(kinds)
    labels = review_labels(true_class, rng)
    stamp = f"{device.device_id}-{day:%Y%m%d}"
    columns = {
        "event_id": [f"{stamp}-{seq:05d}" for seq in range(count)],
        "device_id": [device.device_id] * count,
        "hardware_rev": [device.hardware_rev] * count,
        "vehicle_class": [device.vehicle_class] * count,
        "region": [device.region] * count,
        "ts": (day - _EPOCH).days * _MICROS_PER_DAY + micros_into_day,
        "speed_kph": speed_kph,
        "imu": imu_column(imu),
        "label": labels,
    }
    return DeviceDay(pa.table(columns, schema=TELEMETRY_SCHEMA), true_class)


def simulate_telemetry(
    landing_root: str | Path,
    start: dt.date,
    days: int,
    devices: int,
    seed: int,
    events_per_device_day: float = 40.0,
    revisions: tuple[str, ...] = DEFAULT_REVISIONS,
    season: str = "default",
    progress: bool | None = None,
) -> TelemetrySummary:
    """Write the fleet's telemetry uploads for `days` days from `start` under `landing_root/telemetry`.

    One file per device per day with at least one event (an upload without rows breaks the contract,
    so a quiet device-day uploads nothing). Files are written atomically, one device-day at a time;
    rerunning with the same arguments rewrites byte-identical files. `progress=None` shows a bar on
    stderr for long runs.
    """
    if days < 0 or devices < 0 or events_per_device_day < 0:
        raise ValueError("days, devices and events_per_device_day must not be negative")
    check_season(season)
    fleet = build_fleet(devices, seed, tuple(revisions))
    telemetry_dir = landing_join(landing_root, TELEMETRY_DIR)
    device_days = days * devices
    show_progress = device_days >= _AUTO_PROGRESS_DEVICE_DAYS if progress is None else progress
    files = windows = labelled = 0
    class_counts = dict.fromkeys(HARSH_EVENT_CLASSES, 0)
    with tqdm(total=device_days, disable=not show_progress, file=sys.stderr, unit="device-day") as bar:
        for day in (start + dt.timedelta(days=offset) for offset in range(days)):
            for device in fleet:
                rng = device_day_rng(seed, device, day)
                upload = simulate_device_day(
                    device, day, rng, events_per_device_day=events_per_device_day, season=season
                )
                bar.update()
                table = upload.table
                if table.num_rows == 0:
                    continue
                write_parquet_atomically(table, upload_path(telemetry_dir, device, day))
                files += 1
                windows += table.num_rows
                labelled += table.num_rows - table.column("label").null_count
                for name in class_counts:
                    class_counts[name] += int(np.count_nonzero(upload.true_class == name))
    return TelemetrySummary(telemetry_dir, files, windows, labelled, class_counts)
