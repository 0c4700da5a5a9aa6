"""The edge-feedback upload contract: what a device sends back after running a bundle.

One Parquet file per device upload batch under `landing/edge_feedback/`, named `<batch_id>.parquet`.
One row per event the device scored: the raw window (so the platform can recompute features, measure
drift and retrain on it), the model's scores in the bundle's class order, the decision, the on-device
inference time, and the reviewer's label when a safety manager confirmed or dismissed the event.
"""

import re

import pyarrow as pa

from edge_packaging.telemetry_contract import ContractViolation, conform_columns

FEEDBACK_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("device_id", pa.string(), nullable=False),
        pa.field("hardware_rev", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("bundle_sha256", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("speed_kph", pa.float32(), nullable=False),
        pa.field("imu", pa.list_(pa.float32()), nullable=False),
        pa.field("scores", pa.list_(pa.float32()), nullable=False),
        pa.field("predicted_label", pa.string(), nullable=False),
        pa.field("inference_ms", pa.float32(), nullable=False),
        pa.field("review_label", pa.string(), nullable=True),
    ]
)
"""`scores` holds one probability per class in the bundle manifest's class order. `speed_kph` is the
GPS speed at the trigger, as in telemetry (the model's second input). `review_label` is the class a
reviewer confirmed, `benign` when they dismissed the event, or null when nobody reviewed it."""

BATCH_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def batch_id_of(file_name: str) -> str:
    """The batch id a feedback upload is named by (`<batch_id>.parquet`), or `ContractViolation`."""
    if not file_name.endswith(".parquet"):
        raise ContractViolation(f"feedback upload {file_name!r} is not named <batch_id>.parquet")
    batch_id = file_name[: -len(".parquet")]
    if not BATCH_ID_PATTERN.fullmatch(batch_id):
        raise ContractViolation(f"feedback batch id {batch_id!r} must match {BATCH_ID_PATTERN.pattern}")
    return batch_id


def conform_to_feedback_contract(table: pa.Table) -> pa.Table:
    """`table` with exactly the feedback contract's columns and types, or `ContractViolation`."""
    return conform_columns(table, FEEDBACK_SCHEMA)
