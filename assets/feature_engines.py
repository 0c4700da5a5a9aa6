"""The two engines that turn validated telemetry into window features.

Both call `edge_packaging.features.compute_window_features`, the single definition of the model's
preprocessing, so they cannot disagree except through float summation order (none: each window is
computed whole by the same numpy code). The pandas engine runs in-process; the Spark engine runs the
same function in Python workers through `mapInArrow`, each worker reading its row groups of the
partition straight from the lake with pyarrow.
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


ROW_GROUP_TASK_SCHEMA = "uri string, row_group int"
FEATURE_INPUT_COLUMNS: tuple[str, ...] = (*IDENTITY_COLUMNS, "speed_kph", "imu")


def row_group_tasks(validated_uri: str) -> list[tuple[str, int]]:
    """One Spark task per Parquet row group of the partition, listed from the file's footer alone."""
    import pyarrow.parquet as pq

    from resources.filesystems import filesystem_and_path

    fs, path = filesystem_and_path(validated_uri)
    with fs.open_input_file(path) as file:
        row_groups = pq.ParquetFile(file).metadata.num_row_groups
    return [(validated_uri, row_group) for row_group in range(row_groups)]


def _features_of_row_groups(tasks: "Iterator[pa.RecordBatch]") -> "Iterator[pa.RecordBatch]":
    """Spark engine core, run inside Spark's Python workers: read each task's row group with pyarrow
    and compute its features.

    pyarrow resolves the URI in the worker, with the S3 endpoint and credentials of the executor's
    environment, so Spark needs no Hadoop S3 connector (not shipped with pyspark) and a local path and
    `s3://` take the same path through the code.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from resources.filesystems import filesystem_and_path

    schema = feature_schema()
    for task_batch in tasks:
        for uri, row_group in zip(task_batch.column("uri").to_pylist(), task_batch.column("row_group").to_pylist()):
            fs, path = filesystem_and_path(uri)
            with fs.open_input_file(path) as file:
                table = pq.ParquetFile(file).read_row_group(row_group, columns=list(FEATURE_INPUT_COLUMNS))
            for batch in table.to_batches(PANDAS_CHUNK_ROWS):
                frame = features_of_batch(batch)
                yield from pa.Table.from_pandas(frame, schema=schema, preserve_index=False).to_batches()


def compute_features_spark(spark: Any, validated_uri: str) -> "pa.Table":
    """Spark engine: the driver lists the partition's row groups; the workers read them and compute
    features in parallel, one task per row group.

    Only the small feature table (41 floats a row) comes back to the driver.
    """
    import os

    from pyspark.sql.pandas.types import from_arrow_schema

    # Executors run in other working directories: a local path must not stay relative.
    uri = validated_uri if "://" in validated_uri else os.path.abspath(validated_uri)
    schema = feature_schema()
    tasks = row_group_tasks(uri)
    frame = spark.createDataFrame(tasks, ROW_GROUP_TASK_SCHEMA).repartition(max(len(tasks), 1))
    features = frame.mapInArrow(_features_of_row_groups, from_arrow_schema(schema))
    return features.toArrow().cast(schema).sort_by("event_id")
