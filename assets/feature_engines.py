"""The two engines that turn validated telemetry into window features.

Both call `edge_packaging.features.compute_window_features`, the single definition of the model's
preprocessing, so they cannot disagree except through float summation order (none: each window is
computed whole by the same numpy code). The pandas engine runs in-process, on a partition streamed a
row group at a time (`stream_features_pandas`) or on a table in memory (`compute_features_pandas`);
the Spark engine runs the same function in Python workers through `mapInArrow`, each worker reading
its row groups of the partition straight from the lake with pyarrow.
"""

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

IDENTITY_COLUMNS: tuple[str, ...] = ("event_id", "device_id", "hardware_rev", "vehicle_class", "region", "ts")
FEATURE_INPUT_COLUMNS: tuple[str, ...] = (*IDENTITY_COLUMNS, "speed_kph", "imu")
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


def stream_features_pandas(row_groups: "Iterable[pa.Table]", spill_dir: str) -> "Iterator[pa.Table]":
    """In-process engine over a partition read a row group at a time: the same features as
    `compute_features_pandas`, sorted by event_id, yielded in tables of bounded size.

    Sorting a day needs the whole day, so it is an external merge sort: the features of each row group
    are sorted and spilled to an Arrow file under `spill_dir` as one sorted run (about 270 bytes a
    window), then the runs are merged, reading a few thousand rows of each at a time. Memory holds one
    row group and the merge's heads, not the day's features.
    """
    import pyarrow as pa
    from pyarrow import ipc

    schema = feature_schema()
    path = f"{spill_dir}/sorted-runs.arrow"
    runs: list[list[int]] = []
    spilled = 0
    with pa.OSFile(path, "wb") as sink, ipc.new_file(sink, schema) as spill:
        for row_group in row_groups:
            for batch in row_group.select(list(FEATURE_INPUT_COLUMNS)).to_batches(PANDAS_CHUNK_ROWS):
                features = pa.Table.from_pandas(features_of_batch(batch), schema=schema, preserve_index=False)
                run = features.sort_by("event_id").to_batches(MERGE_BATCH_ROWS)
                for sorted_batch in run:
                    spill.write_batch(sorted_batch)
                runs.append(list(range(spilled, spilled + len(run))))
                spilled += len(run)
                del batch, features, run
            del row_group  # released before the next row group is read
    with pa.OSFile(path, "rb") as source:
        yield from merge_sorted_runs(ipc.open_file(source).get_batch, runs, "event_id")


MERGE_BATCH_ROWS = 4_096
"""Rows of a sorted run read at a time by the merge."""


def merge_sorted_runs(
    read_batch: "Callable[[int], pa.RecordBatch]", runs: "list[list[int]]", key: str
) -> "Iterator[pa.Table]":
    """Merge sorted runs into one order by `key`, yielded as sorted tables.

    A run is the list of its batches' numbers, each batch sorted by `key` and following the previous
    one; `read_batch` reads one. Each step takes, from every run's current batch, the rows up to the
    smallest last key among them: nothing still unread can sort before those, so they are emitted,
    sorted, and at least one batch is used up. Keys must not be null.
    """
    import numpy as np
    import pyarrow as pa

    pending = {number: list(batches) for number, batches in enumerate(runs) if batches}
    heads: dict[int, tuple[pa.Table, np.ndarray]] = {}

    def advance(number: int) -> None:
        """Make the run's next non-empty batch its head, or drop the run when it has none left."""
        heads.pop(number, None)
        while pending[number]:
            batch = pa.Table.from_batches([read_batch(pending[number].pop(0))])
            if batch.column(key).null_count:
                raise ValueError(f"cannot merge on {key}: it holds nulls")
            if batch.num_rows:
                heads[number] = (batch, batch.column(key).to_numpy(zero_copy_only=False))
                return

    for number in list(pending):
        advance(number)
    while heads:
        bound = min(keys[-1] for _, keys in heads.values())
        pieces = []
        for number in sorted(heads):
            batch, keys = heads[number]
            taken = int(np.searchsorted(keys, bound, side="right"))
            if taken:
                pieces.append(batch.slice(0, taken))
            if taken < batch.num_rows:
                heads[number] = (batch.slice(taken), keys[taken:])
            else:
                advance(number)
        yield pa.concat_tables(pieces).sort_by(key)


ROW_GROUP_TASK_SCHEMA = "uri string, row_group int"


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
