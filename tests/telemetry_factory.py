"""Small, seeded telemetry tables for tests that need contract-shaped rows but not physics."""

import datetime as dt

import numpy as np
import pyarrow as pa

from edge_packaging.telemetry_contract import (
    GRAVITY_MPS2,
    HARSH_EVENT_CLASSES,
    IMU_CHANNELS,
    SAMPLES_PER_WINDOW,
    TELEMETRY_SCHEMA,
    imu_column,
)


def telemetry_table(rows: int, day: dt.date, seed: int = 0, prefix: str = "dev") -> pa.Table:
    """`rows` valid windows on `day`: gravity on z plus noise, labels on every other row."""
    rng = np.random.default_rng(seed)
    windows = rng.normal(0, 0.3, size=(rows, len(IMU_CHANNELS), SAMPLES_PER_WINDOW)).astype(np.float32)
    windows[:, 2] += np.float32(GRAVITY_MPS2)
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc)
    seconds = np.sort(rng.uniform(0, 86_399, size=rows))
    labels = [HARSH_EVENT_CLASSES[i % len(HARSH_EVENT_CLASSES)] if i % 2 == 0 else None for i in range(rows)]
    return pa.Table.from_arrays(
        [
            pa.array([f"{prefix}-{day:%Y%m%d}-{i:05d}" for i in range(rows)]),
            pa.array([f"{prefix}-{i % 3}" for i in range(rows)]),
            pa.array(["vg-r3"] * rows),
            pa.array(["light", "medium", "heavy"][i % 3] for i in range(rows)),
            pa.array(["north"] * rows),
            pa.array([start + dt.timedelta(seconds=float(s)) for s in seconds], type=pa.timestamp("us", tz="UTC")),
            pa.array(rng.uniform(0, 120, size=rows).astype(np.float32)),
            imu_column(windows),
            pa.array(labels, type=pa.string()),
        ],
        schema=TELEMETRY_SCHEMA,
    )
