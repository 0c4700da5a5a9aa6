"""The two engines that turn validated telemetry into window features.

Both call `edge_packaging.features.compute_window_features`, the single definition of the model's
preprocessing, so they cannot disagree except through float summation order (none: each window is
computed whole by the same numpy code). The pandas engine runs in-process; the Spark engine runs the
same function in Python workers through `mapInArrow`, reading the partition straight from the lake.
"""

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

IDENTITY_COLUMNS: tuple[str, ...] = ("event_id", "device_id", "hardware_rev", "vehicle_class", "region", "ts")
PANDAS_CHUNK_ROWS = 65_536
"""Rows per in-process chunk: bounds the memory of the intermediate frames."""


def feature_schema(identity: "pa.Schema | None" = None) -> "pa.Schema":
    """Identity columns (for joins and slicing; telemetry's by default) followed by one float32
    column per feature."""
    import pyarrow as pa

    from edge_packaging.features import FEATURE_NAMES
    from edge_packaging.telemetry_contract import TELEMETRY_SCHEMA

    fields = list(identity) if identity is not None else [TELEMETRY_SCHEMA.field(name) for name in IDENTITY_COLUMNS]
    return pa.schema(fields + [pa.field(name, pa.float32()) for name in FEATURE_NAMES])


def features_of_batch(batch: "pa.RecordBatch | pa.Table", identity_columns: "tuple[str, ...]" = IDENTITY_COLUMNS) -> "pd.DataFrame":
    """Core of both engines: validated telemetry rows to a frame of identity columns and features.

    The windows come straight out of the Arrow list column (no per-row objects); pandas carries the
    identity columns and the result.
    """
    import pandas as pd

    from edge_packaging.features import FEATURE_NAMES, compute_window_features
    from edge_packaging.telemetry_contract import imu_windows

    values = compute_window_features(imu_windows(batch.column("imu")), batch.column("speed_kph").to_numpy())
    identity = batch.select(list(identity_columns)).to_pandas()
    features = pd.DataFrame(values, columns=list(FEATURE_NAMES), index=identity.index)
    return pd.concat([identity, features], axis=1)


def compute_features_pandas(validated: "pa.Table", identity_columns: "tuple[str, ...]" = IDENTITY_COLUMNS) -> "pa.Table":
    """In-process engine: chunks of the partition through pandas, sorted by event_id. The identity
    columns carried beside the features default to telemetry's."""
    import pyarrow as pa

    custom = identity_columns != IDENTITY_COLUMNS
    schema = feature_schema(pa.schema([validated.schema.field(name) for name in identity_columns]) if custom else None)
    chunks = [
        pa.Table.from_pandas(features_of_batch(batch, identity_columns), schema=schema, preserve_index=False)
        for batch in validated.select([*identity_columns, "speed_kph", "imu"]).to_batches(PANDAS_CHUNK_ROWS)
    ]
    table = pa.concat_tables(chunks) if chunks else schema.empty_table()
    return table.sort_by("event_id")


def _features_of_arrow_batches(batches: "Iterator[pa.RecordBatch]") -> "Iterator[pa.RecordBatch]":
    """Spark engine core, run inside Spark's Python workers."""
    import pyarrow as pa

    schema = feature_schema()
    for batch in batches:
        frame = features_of_batch(batch)
        yield from pa.Table.from_pandas(frame, schema=schema, preserve_index=False).to_batches()


def compute_features_spark(spark: Any, validated_uri: str) -> "pa.Table":
    """Spark engine: the workers read the partition from the lake and compute features in parallel.

    Only the small feature table (41 floats a row) comes back to the driver.
    """
    from pyspark.sql.pandas.types import from_arrow_schema

    schema = feature_schema()
    frame = spark.read.parquet(validated_uri).select(*IDENTITY_COLUMNS, "speed_kph", "imu")
    features = frame.mapInArrow(_features_of_arrow_batches, from_arrow_schema(schema))
    return features.toArrow().cast(schema).sort_by("event_id")
