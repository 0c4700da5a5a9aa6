"""The telemetry upload contract shared by devices, the simulated fleet and the platform.

One row per event window: 4 s of IMU data at 50 Hz on 6 channels, stored channel-major as a flat list
of 1200 float32 values, plus the GPS speed at the trigger and an optional review label.
"""

from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    import numpy as np

from edge_packaging.window_spec import (  # noqa: F401 - the contract presents the window spec too
    ACCEL_RANGE_MPS2,
    GRAVITY_MPS2,
    GYRO_RANGE_RADPS,
    HARSH_EVENT_CLASSES,
    IMU_CHANNELS,
    IMU_VALUES_PER_WINDOW,
    SAMPLE_RATE_HZ,
    SAMPLES_PER_WINDOW,
    SPEED_RANGE_KPH,
    VEHICLE_CLASSES,
    WINDOW_SECONDS,
)

TELEMETRY_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("device_id", pa.string(), nullable=False),
        pa.field("hardware_rev", pa.string(), nullable=False),
        pa.field("vehicle_class", pa.string(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("speed_kph", pa.float32(), nullable=False),
        pa.field("imu", pa.list_(pa.float32()), nullable=False),
        pa.field("label", pa.string(), nullable=True),
    ]
)
TELEMETRY_COLUMNS: tuple[str, ...] = tuple(TELEMETRY_SCHEMA.names)


class ContractViolation(ValueError):
    """An upload that cannot be read under the contract; the message is the one-line reason."""


def _type_family_matches(actual: pa.DataType, expected: pa.DataType) -> bool:
    """Whether `actual` can stand for `expected` without losing meaning (width may differ; a
    dictionary-encoded column stands for its values)."""
    if pa.types.is_dictionary(actual):
        actual = actual.value_type
    if pa.types.is_string(expected):
        return pa.types.is_string(actual) or pa.types.is_large_string(actual) or pa.types.is_null(actual)
    if pa.types.is_floating(expected):
        return pa.types.is_floating(actual) or pa.types.is_integer(actual)
    if pa.types.is_timestamp(expected):
        return pa.types.is_timestamp(actual)
    if pa.types.is_list(expected):
        is_list = pa.types.is_list(actual) or pa.types.is_large_list(actual)
        return is_list and _type_family_matches(actual.value_type, expected.value_type)
    return actual.equals(expected)


def conform_columns(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Return `table` with exactly `schema`'s columns and types, or raise `ContractViolation`.

    Extra columns are tolerated and dropped (devices may add fields before the platform knows them);
    a missing column or one of the wrong kind is an error. Timestamps without a zone are rejected,
    since a device clock of unknown zone cannot be placed in a daily partition.
    """
    if table.num_rows == 0:
        raise ContractViolation("empty upload: no rows")
    check_columns(table.schema, schema)
    columns = [table.column(field.name).cast(field.type) for field in schema]
    return pa.Table.from_arrays(columns, schema=nullable(schema))


def nullable(schema: pa.Schema) -> pa.Schema:
    """`schema` with every field nullable: the shape of rows not yet validated (a raw upload) or
    refused (a row quarantine), whose missing values are what the row rules report, row by row."""
    return pa.schema([field.with_nullable(True) for field in schema], metadata=schema.metadata)


def check_columns(actual: pa.Schema, schema: pa.Schema) -> None:
    """Raise `ContractViolation` unless `actual` has every column of `schema`, each of the right kind.

    Needs only the schema, so an upload's columns are judged from its file footer, before any data
    is decoded."""
    missing = [name for name in schema.names if name not in actual.names]
    if missing:
        raise ContractViolation(f"schema: missing column(s) {', '.join(missing)}")
    for field in schema:
        actual_type = actual.field(field.name).type
        if not _type_family_matches(actual_type, field.type):
            raise ContractViolation(f"schema: column {field.name} has type {actual_type}, expected {field.type}")
        if pa.types.is_timestamp(actual_type) and actual_type.tz is None:
            raise ContractViolation(f"schema: column {field.name} has no time zone, expected UTC")


def conform_to_telemetry_contract(table: pa.Table) -> pa.Table:
    """`table` with exactly the telemetry contract's columns and types (see `conform_columns`)."""
    return conform_columns(table, TELEMETRY_SCHEMA)


def imu_windows(imu: pa.ChunkedArray | pa.Array) -> "np.ndarray":
    """The imu column as float32 [N, 6, 200]. Every list must hold exactly 1200 values."""
    import numpy as np

    if isinstance(imu, pa.ChunkedArray):
        imu = imu.combine_chunks()
    lengths = imu.value_lengths().to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths.min() != IMU_VALUES_PER_WINDOW or lengths.max() != IMU_VALUES_PER_WINDOW):
        raise ValueError(f"imu windows must hold {IMU_VALUES_PER_WINDOW} values each")
    values = imu.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return values.reshape(len(imu), len(IMU_CHANNELS), SAMPLES_PER_WINDOW)


def imu_column(windows: "np.ndarray") -> pa.ListArray:
    """Inverse of `imu_windows`: float32 [N, 6, 200] to a list<float32> column."""
    import numpy as np

    windows = np.ascontiguousarray(windows, dtype=np.float32)
    flat = pa.array(windows.reshape(-1), type=pa.float32())
    offsets = pa.array(np.arange(0, windows.shape[0] + 1, dtype=np.int32) * IMU_VALUES_PER_WINDOW)
    return pa.ListArray.from_arrays(offsets, flat)

