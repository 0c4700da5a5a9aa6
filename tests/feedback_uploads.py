"""Feedback uploads for the sensor tests: small contract-shaped tables."""

import datetime as dt

import numpy as np
import pyarrow as pa

from edge_packaging.feedback_contract import FEEDBACK_SCHEMA
from edge_packaging.telemetry_contract import HARSH_EVENT_CLASSES, IMU_VALUES_PER_WINDOW

FEEDBACK_SOURCE = "edge_feedback"


def feedback_table(rows: int = 3, seed: int = 0) -> pa.Table:
    """`rows` valid feedback rows; a different `seed` gives different bytes."""
    rng = np.random.default_rng(seed)
    start = dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc)
    scores = rng.dirichlet(np.ones(len(HARSH_EVENT_CLASSES)), size=rows).astype(np.float32)
    return pa.Table.from_arrays(
        [
            pa.array([f"evt-{seed}-{i}" for i in range(rows)]),
            pa.array([f"dev-{i % 2}" for i in range(rows)]),
            pa.array(["vg-r3"] * rows),
            pa.array(["harsh_event_model-3"] * rows),
            pa.array(["ab" * 32] * rows),
            pa.array([start + dt.timedelta(seconds=i) for i in range(rows)], type=pa.timestamp("us", tz="UTC")),
            pa.array(rng.uniform(0, 120, size=rows).astype(np.float32)),
            pa.array(list(rng.normal(0, 1, size=(rows, IMU_VALUES_PER_WINDOW)).astype(np.float32)), type=pa.list_(pa.float32())),
            pa.array(list(scores), type=pa.list_(pa.float32())),
            pa.array([HARSH_EVENT_CLASSES[int(np.argmax(row))] for row in scores]),
            pa.array(rng.uniform(1, 5, size=rows).astype(np.float32)),
            pa.array([None] * rows, type=pa.string()),
        ],
        schema=FEEDBACK_SCHEMA,
    )
