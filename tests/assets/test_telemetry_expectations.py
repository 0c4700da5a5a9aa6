"""Row-level validation of raw telemetry: which rows pass, which are quarantined, and why."""

import datetime as dt
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assets.telemetry_expectations import (
    QUARANTINE_REASON_COLUMN,
    RULE_NAMES,
    TelemetryValidationError,
    validate_telemetry_partition,
)
from edge_packaging.telemetry_contract import (
    ACCEL_RANGE_MPS2,
    GYRO_RANGE_RADPS,
    IMU_VALUES_PER_WINDOW,
    TELEMETRY_COLUMNS,
)

DAY = dt.date(2024, 5, 1)
DAY_START = pd.Timestamp("2024-05-01", tz="UTC")
REPO_ROOT = Path(__file__).resolve().parents[2]


def telemetry(n_rows: int, seed: int = 0) -> pd.DataFrame:
    """`n_rows` valid telemetry rows of DAY, with event ids e0, e1, ... and two source files."""
    rng = np.random.default_rng(seed)
    accel = rng.normal(0.0, 3.0, size=(n_rows, 600))
    gyro = rng.normal(0.0, 0.3, size=(n_rows, 600))
    imu = np.concatenate([accel, gyro], axis=1).astype(np.float32)
    return pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n_rows)],
            "device_id": [f"dev{i % 3}" for i in range(n_rows)],
            "hardware_rev": "rev_a",
            "vehicle_class": rng.choice(["light", "medium", "heavy"], n_rows).astype(object),
            "region": "eu-west",
            "ts": DAY_START + pd.to_timedelta(rng.integers(0, 86_400, n_rows), unit="s"),
            "speed_kph": rng.uniform(0.0, 130.0, n_rows).astype(np.float32),
            "imu": pd.Series(list(imu), dtype=object),
            "label": pd.Series(rng.choice(["benign", "harsh_brake", "collision"], n_rows), dtype=object),
            "source_file": [f"upload_{i % 2}.parquet" for i in range(n_rows)],
        }
    )


def set_imu_value(frame: pd.DataFrame, row: int, index: int, value: float) -> None:
    window = frame.at[row, "imu"].copy()
    window[index] = value
    frame.at[row, "imu"] = window


def failed_rules(reason: str) -> list[str]:
    return [part.split(": ", 1)[0] for part in reason.split("; ")]


def reasons_by_event(result) -> dict[str, list[str]]:
    q = result.quarantined
    return {e: failed_rules(r) for e, r in zip(q["event_id"], q[QUARANTINE_REASON_COLUMN])}


def set_value(column: str, value) -> Callable[[pd.DataFrame, int], None]:
    def mutate(frame: pd.DataFrame, row: int) -> None:
        frame.at[row, column] = value

    return mutate


def duplicate_of_row_0(frame: pd.DataFrame, row: int) -> None:
    frame.at[row, "event_id"] = frame.at[0, "event_id"]


def imu_of_length(length: int) -> Callable[[pd.DataFrame, int], None]:
    def mutate(frame: pd.DataFrame, row: int) -> None:
        frame.at[row, "imu"] = np.zeros(length, dtype=np.float32)

    return mutate


def imu_value(index: int, value: float) -> Callable[[pd.DataFrame, int], None]:
    return lambda frame, row: set_imu_value(frame, row, index, value)


ALREADY_INGESTED_ID = "seen-before"
ALREADY_INGESTED = {ALREADY_INGESTED_ID: "2024-04-28"}

# kind -> (how to break a row, the one rule it must fail). Row 0 is never broken: duplicates copy it.
BAD_ROWS: dict[str, tuple[Callable[[pd.DataFrame, int], None], str]] = {
    "null event_id": (set_value("event_id", None), "event_id_not_null"),
    "null device_id": (set_value("device_id", None), "device_id_not_null"),
    "null hardware_rev": (set_value("hardware_rev", None), "hardware_rev_not_null"),
    "null vehicle_class": (set_value("vehicle_class", None), "vehicle_class_not_null"),
    "null region": (set_value("region", None), "region_not_null"),
    "null ts": (set_value("ts", pd.NaT), "ts_not_null"),
    "NaN speed": (set_value("speed_kph", np.nan), "speed_kph_not_null"),
    "short imu": (imu_of_length(IMU_VALUES_PER_WINDOW - 1), "imu_window_length"),
    "long imu": (imu_of_length(IMU_VALUES_PER_WINDOW + 6), "imu_window_length"),
    "empty imu": (imu_of_length(0), "imu_window_length"),
    "missing imu": (set_value("imu", None), "imu_window_length"),
    "NaN in imu": (imu_value(17, np.nan), "imu_values_finite"),
    "inf in gyro": (imu_value(900, np.inf), "imu_values_finite"),
    "accel over range": (imu_value(250, 17 * 9.81), "accel_within_sensor_range"),
    "accel under range": (imu_value(5, -200.0), "accel_within_sensor_range"),
    "gyro over range": (imu_value(1100, 40.0), "gyro_within_sensor_range"),
    "negative speed": (set_value("speed_kph", -1.0), "speed_kph_in_range"),
    "speed over range": (set_value("speed_kph", 251.0), "speed_kph_in_range"),
    "unknown vehicle_class": (set_value("vehicle_class", "bus"), "vehicle_class_known"),
    "unknown label": (set_value("label", "near_miss"), "label_known_class"),
    "ts the day before": (set_value("ts", DAY_START - pd.Timedelta(seconds=1)), "ts_in_partition_day"),
    "ts at next midnight": (set_value("ts", DAY_START + pd.Timedelta(days=1)), "ts_in_partition_day"),
    "repeated event_id": (duplicate_of_row_0, "event_id_unique_in_partition"),
    "already ingested": (set_value("event_id", ALREADY_INGESTED_ID), "event_id_not_already_ingested"),
}


@pytest.mark.parametrize("kind", list(BAD_ROWS))
def test_each_bad_row_kind_quarantines_that_row_for_its_rule(kind):
    raw = telemetry(6)
    mutate, rule = BAD_ROWS[kind]
    mutate(raw, 3)

    result = validate_telemetry_partition(raw, DAY, ALREADY_INGESTED)

    assert result.quarantined.index.tolist() == [3]
    assert failed_rules(result.quarantined[QUARANTINE_REASON_COLUMN].iat[0]) == [rule]
    assert result.valid.index.tolist() == [0, 1, 2, 4, 5]
    outcome = result.rule(rule)
    assert not outcome.success and outcome.unexpected_count == 1
    assert all(o.success for o in result.rules if o.rule != rule)


def test_valid_partition_passes_whole_and_unchanged():
    raw = telemetry(8)
    raw.index = pd.RangeIndex(100, 108)

    result = validate_telemetry_partition(raw, DAY, {})

    pd.testing.assert_frame_equal(result.valid, raw)
    assert result.quarantined.empty
    assert list(result.quarantined.columns) == [*raw.columns, QUARANTINE_REASON_COLUMN]
    assert result.quarantined_share == 0.0
    assert [o.rule for o in result.rules] == list(RULE_NAMES)
    assert all(o.success and o.unexpected_count == 0 and o.example_event_ids == () for o in result.rules)


def test_readings_at_the_sensor_limits_and_day_bounds_pass():
    raw = telemetry(3)
    set_imu_value(raw, 0, 0, np.float32(ACCEL_RANGE_MPS2))
    set_imu_value(raw, 1, 1199, -np.float32(GYRO_RANGE_RADPS))
    raw.at[0, "ts"] = DAY_START
    raw.at[1, "speed_kph"] = np.float32(250.0)
    raw.at[2, "speed_kph"] = np.float32(0.0)

    result = validate_telemetry_partition(raw, DAY, {})

    assert result.quarantined.empty


def test_a_row_failing_two_rules_lists_both_in_rule_order():
    raw = telemetry(4)
    raw.at[2, "label"] = "near_miss"
    raw.at[2, "speed_kph"] = 300.0

    result = validate_telemetry_partition(raw, DAY, {})

    (reason,) = result.quarantined[QUARANTINE_REASON_COLUMN]
    assert failed_rules(reason) == ["speed_kph_in_range", "label_known_class"]
    assert "speed_kph 300 outside [0, 250]" in reason
    assert "'near_miss'" in reason


def test_a_value_quoted_in_a_reason_cannot_forge_another_reason():
    raw = telemetry(2)
    raw.at[1, "label"] = "benign; ts_not_null: fake"

    result = validate_telemetry_partition(raw, DAY, {})

    (reason,) = result.quarantined[QUARANTINE_REASON_COLUMN]
    assert failed_rules(reason) == ["label_known_class"]


def test_nan_imu_values_do_not_break_the_range_rules():
    raw = telemetry(3)
    set_imu_value(raw, 1, 10, np.nan)
    set_imu_value(raw, 1, 20, -np.inf)
    set_imu_value(raw, 1, 700, 99.0)

    result = validate_telemetry_partition(raw, DAY, {})

    (reason,) = result.quarantined[QUARANTINE_REASON_COLUMN]
    assert failed_rules(reason) == ["imu_values_finite", "gyro_within_sensor_range"]
    assert "2 of 1200 imu values are NaN or infinite" in reason


def test_null_labels_pass_and_count_as_unlabelled():
    raw = telemetry(5)
    raw["label"] = pd.Series(["benign", None, np.nan, pd.NA, "collision"], dtype=object)

    result = validate_telemetry_partition(raw, DAY, {})

    assert result.quarantined.empty
    assert result.rule("label_known_class").success
    assert result.null_rates["label"] == pytest.approx(3 / 5)


def test_null_labels_pass_in_a_pandas_string_column():
    raw = telemetry(4)
    raw["label"] = pd.Series([None, "benign", None, "harsh_turn"], dtype="string")

    result = validate_telemetry_partition(raw, DAY, {})

    assert result.quarantined.empty


def test_repeated_event_ids_keep_the_first_occurrence():
    raw = telemetry(6)
    raw["event_id"] = ["a", "dup", "b", "dup", "dup", "c"]

    result = validate_telemetry_partition(raw, DAY, {})

    assert result.valid["event_id"].tolist() == ["a", "dup", "b", "c"]
    assert result.valid.index.tolist() == [0, 1, 2, 5]
    assert result.quarantined.index.tolist() == [3, 4]
    for reason in result.quarantined[QUARANTINE_REASON_COLUMN]:
        assert failed_rules(reason) == ["event_id_unique_in_partition"]
        assert "upload_1.parquet" in reason  # where the kept first occurrence came from


def test_already_ingested_events_name_the_earlier_partition():
    raw = telemetry(4)
    raw["event_id"] = ["a", "b", "c", "d"]

    ingested = {"b": "2024-04-28", "d": "2024-04-30", "zz": "2024-04-01"}

    result = validate_telemetry_partition(raw, DAY, ingested)

    assert reasons_by_event(result) == {
        "b": ["event_id_not_already_ingested"],
        "d": ["event_id_not_already_ingested"],
    }
    reasons = dict(zip(result.quarantined["event_id"], result.quarantined[QUARANTINE_REASON_COLUMN]))
    assert "partition 2024-04-28" in reasons["b"]
    assert "partition 2024-04-30" in reasons["d"]


def test_rerunning_the_same_partition_does_not_quarantine_its_own_events():
    raw = telemetry(3)

    result = validate_telemetry_partition(raw, DAY, {event_id: "2024-05-01" for event_id in raw["event_id"]})

    assert result.quarantined.empty


def test_rule_outcomes_report_counts_and_at_most_five_examples():
    raw = telemetry(10)
    raw.loc[[1, 2, 4, 5, 7, 8, 9], "speed_kph"] = 400.0

    result = validate_telemetry_partition(raw, DAY, {})

    outcome = result.rule("speed_kph_in_range")
    assert outcome.expectation_type == "expect_column_values_to_be_between"
    assert outcome.column == "speed_kph"
    assert not outcome.success
    assert outcome.unexpected_count == 7
    assert outcome.example_event_ids == ("e1", "e2", "e4", "e5", "e7")
    assert result.quarantined_share == pytest.approx(0.7)
    assert result.rule("event_id_not_null").expectation_type == "expect_column_values_to_not_be_null"


def test_null_rates_per_contract_column():
    raw = telemetry(4)
    raw.at[0, "device_id"] = None
    raw.at[1, "imu"] = None
    raw.at[2, "imu"] = None
    raw["label"] = [None, None, None, "benign"]

    result = validate_telemetry_partition(raw, DAY, {})

    expected = dict.fromkeys(TELEMETRY_COLUMNS, 0.0) | {"device_id": 0.25, "imu": 0.5, "label": 0.75}
    assert result.null_rates == pytest.approx(expected)
    assert set(result.null_rates) == set(TELEMETRY_COLUMNS)


def test_empty_partition_validates_to_two_empty_frames():
    raw = telemetry(0)

    result = validate_telemetry_partition(raw, DAY, {})

    assert len(result.valid) == len(result.quarantined) == 0
    assert list(result.quarantined.columns) == [*raw.columns, QUARANTINE_REASON_COLUMN]
    assert result.quarantined_share == 0.0
    assert result.null_rates == dict.fromkeys(TELEMETRY_COLUMNS, 0.0)
    assert len(result.rules) == len(RULE_NAMES)


def test_a_rule_great_expectations_cannot_evaluate_raises():
    raw = telemetry(3)
    raw["speed_kph"] = pd.Series(["fast", "12", "slow"], dtype=object)

    with pytest.raises(TelemetryValidationError, match="speed_kph_in_range"):
        validate_telemetry_partition(raw, DAY, {})


def test_missing_contract_column_is_refused():
    with pytest.raises(ValueError, match="imu"):
        validate_telemetry_partition(telemetry(2).drop(columns="imu"), DAY, {})


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_good=st.integers(min_value=0, max_value=6),
    bad_kinds=st.lists(st.sampled_from(sorted(BAD_ROWS)), max_size=8),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_every_row_is_either_valid_or_quarantined(n_good, bad_kinds, seed):
    raw = telemetry(1 + n_good + len(bad_kinds), seed=seed)
    order = np.random.default_rng(seed).permutation(np.arange(1, len(raw)))
    bad_rows = dict(zip(order[: len(bad_kinds)].tolist(), bad_kinds))
    for row, kind in bad_rows.items():
        BAD_ROWS[kind][0](raw, row)

    result = validate_telemetry_partition(raw, DAY, ALREADY_INGESTED)

    assert len(result.valid) + len(result.quarantined) == len(raw)
    assert sorted(result.quarantined.index) == sorted(bad_rows)
    assert result.valid.index.tolist() == [i for i in range(len(raw)) if i not in bad_rows]
    for row, reason in result.quarantined[QUARANTINE_REASON_COLUMN].items():
        assert BAD_ROWS[bad_rows[row]][1] in failed_rules(reason)
    assert sum(o.unexpected_count for o in result.rules) >= len(bad_rows)


def test_importing_the_module_loads_neither_great_expectations_nor_dagster():
    probe = (
        "import sys, assets.telemetry_expectations; "
        "print('great_expectations' in sys.modules, 'dagster' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]


@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    bad_kinds=st.lists(st.sampled_from(sorted(BAD_ROWS)), min_size=1, max_size=6),
    chunk_rows=st.integers(min_value=2, max_value=5),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_a_day_validated_chunk_by_chunk_is_judged_as_the_whole_day(bad_kinds, chunk_rows, seed):
    """Repeats across chunks, events of other days, every bad row kind: the chunks' valid and
    quarantined rows, reasons, rule outcomes and null rates are those of the whole day at once."""
    import pyarrow as pa

    from assets.telemetry_expectations import TelemetryDayValidation, event_id_index

    raw = telemetry(2 + 2 * len(bad_kinds), seed=seed)
    for row, kind in zip(range(len(raw) - 1, 0, -2), bad_kinds):  # bad rows late, the repeated row 0 early
        BAD_ROWS[kind][0](raw, row)
    whole = validate_telemetry_partition(raw, DAY, ALREADY_INGESTED)

    table = pa.Table.from_pandas(raw, preserve_index=False)
    index = event_id_index(
        table.column("event_id"),
        table.column("source_file"),
        DAY,
        [("2024-04-28", pa.array([ALREADY_INGESTED_ID]))],
    )
    day = TelemetryDayValidation(DAY, index)
    chunks = [table.slice(start, chunk_rows) for start in range(0, table.num_rows, chunk_rows)]
    splits = list(day.validate_chunks(chunks, table.schema))

    valid = pa.concat_tables([valid for valid, _ in splits]).column("event_id").to_pylist()
    quarantined = pa.concat_tables([quarantined for _, quarantined in splits])
    assert valid == whole.valid["event_id"].tolist()
    assert quarantined.column("event_id").to_pylist() == whole.quarantined["event_id"].tolist()
    reasons = quarantined.column(QUARANTINE_REASON_COLUMN).to_pylist()
    assert reasons == whole.quarantined[QUARANTINE_REASON_COLUMN].tolist()
    assert day.rules == whole.rules
    assert day.null_rates == pytest.approx(whole.null_rates)
    figures = (day.rows_in, day.rows_valid, day.rows_quarantined)
    assert figures == (whole.rows_in, whole.rows_valid, whole.rows_quarantined)
    assert day.quarantined_examples["event_id"].tolist() == whole.quarantined_examples["event_id"].tolist()
