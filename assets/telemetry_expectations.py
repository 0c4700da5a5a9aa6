"""Row-level validation of one daily partition of raw telemetry with great-expectations.

Every rule is one great-expectations expectation, run over a scalar frame derived from the partition:
the contract's scalar columns plus helper columns computed from the imu arrays with numpy (GX cannot
look inside a list column, so the object `imu` column never reaches it). Rows named in any failing
expectation's `unexpected_index_list` are quarantined with the reason of every rule they broke; the
rest pass. No row is lost: `len(valid) + len(quarantined) == len(raw)`.

The module imports neither Dagster nor great-expectations at import time (GX costs about 5 s to
import), so the code location stays cheap to load; GX is imported on the first validation.
"""

import datetime as dt
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from edge_packaging.telemetry_contract import (
    ACCEL_RANGE_MPS2,
    GYRO_RANGE_RADPS,
    HARSH_EVENT_CLASSES,
    IMU_CHANNELS,
    IMU_VALUES_PER_WINDOW,
    SAMPLES_PER_WINDOW,
    SPEED_RANGE_KPH,
    TELEMETRY_COLUMNS,
    VEHICLE_CLASSES,
)

KEY_COLUMNS: tuple[str, ...] = (
    "event_id",
    "device_id",
    "hardware_rev",
    "vehicle_class",
    "region",
    "ts",
    "speed_kph",
)
QUARANTINE_REASON_COLUMN = "quarantine_reason"
MAX_EXAMPLE_EVENT_IDS = 5

# Channel-major layout: the accelerometer's three channels come first, then the gyroscope's.
_ACCEL_VALUES = IMU_CHANNELS.index("gx") * SAMPLES_PER_WINDOW
# Sensors report float32: a reading saturated at the range limit rounds to slightly above the float64
# constant, and must still pass.
_ACCEL_LIMIT_MPS2 = max(ACCEL_RANGE_MPS2, float(np.float32(ACCEL_RANGE_MPS2)))
_GYRO_LIMIT_RADPS = max(GYRO_RANGE_RADPS, float(np.float32(GYRO_RANGE_RADPS)))
_STACK_CHUNK_ROWS = 2048
# COMPLETE, for every failing row's index. GX also serialises every result into its (in-memory) results
# store: leaving out the failing values and the pandas query string that lists every index keeps a
# partition where most rows fail from costing seconds.
_RESULT_FORMAT = {
    "result_format": "COMPLETE",
    "exclude_unexpected_values": True,
    "return_unexpected_index_query": False,
}


class TelemetryValidationError(RuntimeError):
    """great-expectations could not evaluate a rule on the whole table: the partition is not validated."""


@dataclass(frozen=True)
class RuleOutcome:
    """How one rule (one great-expectations expectation) fared on a partition."""

    rule: str
    expectation_type: str
    column: str
    success: bool
    unexpected_count: int
    example_event_ids: tuple[str | None, ...]
    """Up to five event_ids of failing rows, in input order (None where the row has no event_id)."""


@dataclass(frozen=True, eq=False)
class RowValidation:
    """The outcome of validating one partition: every input row is in exactly one of the two frames."""

    valid: pd.DataFrame
    """Rows that passed every rule: the input's columns, index and order."""
    quarantined: pd.DataFrame
    """Rows that failed a rule: the input's columns plus `quarantine_reason`, every failed rule of the
    row as "rule_name: detail", joined with "; "."""
    rules: tuple[RuleOutcome, ...]
    """One per rule (one GX expectation each), in `RULE_NAMES` order."""
    null_rates: dict[str, float]
    """Share of nulls per contract column (0.0 on an empty partition); for `label` the unlabelled share."""

    @property
    def rows_in(self) -> int:
        return len(self.valid) + len(self.quarantined)

    @property
    def quarantined_share(self) -> float:
        return len(self.quarantined) / self.rows_in if self.rows_in else 0.0

    def rule(self, name: str) -> RuleOutcome:
        """The outcome of the rule called `name`."""
        for outcome in self.rules:
            if outcome.rule == name:
                return outcome
        raise KeyError(name)


@dataclass(frozen=True)
class Rule:
    name: str
    expectation: str
    """Class name in `great_expectations.expectations`."""
    kwargs: dict[str, Any]
    details: Callable[[pd.DataFrame], list[str]]
    """Why each of the given rows of the checked frame breaks the rule, for the quarantine reason."""

    @property
    def column(self) -> str:
        return self.kwargs["column"]


def window_rules() -> tuple[Rule, ...]:
    """Rules on the window and speed, shared by every upload that carries raw windows (telemetry and
    edge feedback): length, finiteness, sensor ranges, speed range. They read `imu_summary` columns."""
    low_kph, high_kph = SPEED_RANGE_KPH
    return (
        Rule(
            "imu_window_length",
            "ExpectColumnValuesToBeBetween",
            {"column": "imu_length", "min_value": IMU_VALUES_PER_WINDOW, "max_value": IMU_VALUES_PER_WINDOW},
            lambda rows: [
                f"imu holds {length} values, expected {IMU_VALUES_PER_WINDOW}"
                for length in rows["imu_length"]
            ],
        ),
        Rule(
            "imu_values_finite",
            "ExpectColumnValuesToBeBetween",
            {"column": "imu_nonfinite_values", "min_value": 0, "max_value": 0},
            lambda rows: [
                f"{bad} of {length} imu values are NaN or infinite"
                for bad, length in zip(rows["imu_nonfinite_values"], rows["imu_length"])
            ],
        ),
        Rule(
            "accel_within_sensor_range",
            "ExpectColumnValuesToBeBetween",
            {"column": "accel_max_abs_mps2", "min_value": 0.0, "max_value": _ACCEL_LIMIT_MPS2},
            lambda rows: [
                f"|accel| reaches {value:.6g} m/s^2, sensor range is ±{ACCEL_RANGE_MPS2:.6g}"
                for value in rows["accel_max_abs_mps2"]
            ],
        ),
        Rule(
            "gyro_within_sensor_range",
            "ExpectColumnValuesToBeBetween",
            {"column": "gyro_max_abs_radps", "min_value": 0.0, "max_value": _GYRO_LIMIT_RADPS},
            lambda rows: [
                f"|gyro| reaches {value:.6g} rad/s, sensor range is ±{GYRO_RANGE_RADPS:.6g}"
                for value in rows["gyro_max_abs_radps"]
            ],
        ),
        Rule(
            "speed_kph_in_range",
            "ExpectColumnValuesToBeBetween",
            {"column": "speed_kph", "min_value": low_kph, "max_value": high_kph},
            lambda rows: [
                f"speed_kph {value:.6g} outside [{low_kph:g}, {high_kph:g}]" for value in rows["speed_kph"]
            ],
        ),
    )


def not_null_rule(column: str) -> Rule:
    return Rule(
        f"{column}_not_null",
        "ExpectColumnValuesToNotBeNull",
        {"column": column},
        lambda rows: [f"{column} is null"] * len(rows),
    )


def _rules(partition_day: dt.date) -> tuple[Rule, ...]:
    day_start = pd.Timestamp(partition_day.isoformat(), tz="UTC")
    day_end = day_start + pd.Timedelta(days=1)

    return (
        *(not_null_rule(column) for column in KEY_COLUMNS),
        *window_rules(),
        Rule(
            "vehicle_class_known",
            "ExpectColumnValuesToBeInSet",
            {"column": "vehicle_class", "value_set": list(VEHICLE_CLASSES)},
            lambda rows: [
                f"vehicle_class {value!r} is not one of {', '.join(VEHICLE_CLASSES)}"
                for value in rows["vehicle_class"]
            ],
        ),
        # Column-map expectations leave nulls out of their domain: an unlabelled event passes.
        Rule(
            "label_known_class",
            "ExpectColumnValuesToBeInSet",
            {"column": "label", "value_set": list(HARSH_EVENT_CLASSES)},
            lambda rows: [
                f"label {value!r} is not one of {', '.join(HARSH_EVENT_CLASSES)}" for value in rows["label"]
            ],
        ),
        Rule(
            "ts_in_partition_day",
            "ExpectColumnValuesToBeBetween",
            {"column": "ts", "min_value": day_start, "max_value": day_end, "strict_max": True},
            lambda rows: [
                f"ts {ts.isoformat()} is outside partition day {partition_day.isoformat()}"
                for ts in rows["ts"]
            ],
        ),
        Rule(
            "event_id_unique_in_partition",
            "ExpectColumnValuesToBeBetween",
            {"column": "event_id_repeat", "min_value": 0, "max_value": 0},
            lambda rows: [
                f"event_id {event_id!r} repeats an earlier row of this partition (the kept first "
                f"occurrence came from {source})"
                for event_id, source in zip(rows["event_id"], rows["event_id_first_source"])
            ],
        ),
        Rule(
            "event_id_not_already_ingested",
            "ExpectColumnValuesToBeNull",
            {"column": "ingested_partition"},
            lambda rows: [
                f"event_id {event_id!r} was already validated in partition {key}"
                for event_id, key in zip(rows["event_id"], rows["ingested_partition"])
            ],
        ),
    )


RULE_NAMES: tuple[str, ...] = tuple(rule.name for rule in _rules(dt.date(1970, 1, 1)))
"""The stable rule names, in the order rules are reported and reasons are joined."""


def imu_summary(imu: pd.Series) -> pd.DataFrame:
    """Per-row imu length, count of non-finite values and finite max-abs of each sensor.

    The max-abs columns are NaN where the window is not 1200 values long: its channel layout is unknown,
    and the length rule already fails it. Non-finite values are left out of the max-abs, so they fail
    only the finiteness rule.
    """
    windows = imu.to_numpy(dtype=object)
    n_rows = len(windows)
    lengths = np.fromiter(
        (len(window) if isinstance(window, (np.ndarray, list, tuple)) else 0 for window in windows),
        dtype=np.int64,
        count=n_rows,
    )
    nonfinite = np.zeros(n_rows, dtype=np.int64)
    accel_max = np.full(n_rows, np.nan)
    gyro_max = np.full(n_rows, np.nan)

    full = np.flatnonzero(lengths == IMU_VALUES_PER_WINDOW)
    # Stacking in chunks bounds the copy to a few MB rather than the whole partition.
    for start in range(0, len(full), _STACK_CHUNK_ROWS):
        rows = full[start : start + _STACK_CHUNK_ROWS]
        block = np.stack([np.asarray(windows[i]).reshape(-1) for i in rows])
        finite = np.isfinite(block)
        nonfinite[rows] = IMU_VALUES_PER_WINDOW - finite.sum(axis=1)
        magnitude = np.abs(np.where(finite, block, 0))
        accel_max[rows] = magnitude[:, :_ACCEL_VALUES].max(axis=1)
        gyro_max[rows] = magnitude[:, _ACCEL_VALUES:].max(axis=1)

    for i in np.flatnonzero((lengths != IMU_VALUES_PER_WINDOW) & (lengths > 0)):
        values = np.asarray(windows[i], dtype=np.float64).reshape(-1)
        nonfinite[i] = int(np.count_nonzero(~np.isfinite(values)))

    return pd.DataFrame(
        {
            "imu_length": lengths,
            "imu_nonfinite_values": nonfinite,
            "accel_max_abs_mps2": accel_max,
            "gyro_max_abs_radps": gyro_max,
        }
    )


def _checked_frame(
    raw: pd.DataFrame, partition_day: dt.date, already_ingested: Mapping[str, str]
) -> pd.DataFrame:
    """The scalar frame the rules look at, one row per input row, positionally indexed."""
    frame = raw[[c for c in TELEMETRY_COLUMNS if c != "imu"]].reset_index(drop=True)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame = pd.concat([frame, imu_summary(raw["imu"])], axis=1)

    event_ids = frame["event_id"]
    by_event = frame.groupby(event_ids, sort=False, dropna=True)
    # NaN for a null event_id: GX leaves nulls out, so such a row fails only event_id_not_null.
    frame["event_id_repeat"] = by_event.cumcount().reindex(frame.index)
    sources = (
        raw["source_file"].reset_index(drop=True)
        if "source_file" in raw.columns
        else pd.Series("an unnamed file", index=frame.index)
    )
    frame["event_id_first_source"] = sources.groupby(event_ids, sort=False, dropna=True).transform("first")

    # An entry for this very day is the partition being re-validated, not an earlier ingestion.
    this_day = partition_day.isoformat()
    ingested = [
        None if pd.isna(event_id) else already_ingested.get(event_id) for event_id in event_ids.tolist()
    ]
    frame["ingested_partition"] = pd.Series(
        [None if key == this_day else key for key in ingested], index=frame.index, dtype=object
    )
    return frame


def run_expectations(frame: pd.DataFrame, rules: tuple[Rule, ...]) -> dict[str, Any]:
    """Run every rule as one suite in one ephemeral GX context; GX results keyed by rule name."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas("raw_telemetry")
        .add_dataframe_asset("partition")
        .add_batch_definition_whole_dataframe("whole_partition")
    )
    suite = context.suites.add(
        gx.ExpectationSuite(
            name="telemetry_rows",
            expectations=[
                getattr(gxe, rule.expectation)(**rule.kwargs, meta={"rule": rule.name}) for rule in rules
            ],
        )
    )
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name="telemetry_rows", data=batch_definition, suite=suite)
    )
    columns = list(dict.fromkeys(rule.column for rule in rules))
    run = validation.run(batch_parameters={"dataframe": frame[columns]}, result_format=_RESULT_FORMAT)

    by_rule: dict[str, Any] = {}
    for result in run.results:
        name = result.expectation_config.meta.get("rule")
        info = result.exception_info or {}
        # A failed metric shows up either flat ({"raised_exception": True, ...}) or, in GX 1.24, as a
        # dict keyed by metric id with an empty result: both mean the rule was not evaluated.
        errors = [info] if "raised_exception" in info else list(info.values())
        messages = [
            str(error.get("exception_message"))
            for error in errors
            if str(error.get("raised_exception")) == "True"
        ]
        if messages or "unexpected_index_list" not in result.result:
            raise TelemetryValidationError(
                f"rule {name} ({result.expectation_config.type}) could not be evaluated: "
                + ("; ".join(messages) or "no row-level result")
            )
        by_rule[name] = result
    missing = [rule.name for rule in rules if rule.name not in by_rule]
    if missing:
        raise TelemetryValidationError(
            f"great-expectations returned no result for rule(s) {', '.join(missing)}"
        )
    return by_rule


def validate_telemetry_partition(
    raw: pd.DataFrame, partition_day: dt.date, already_ingested: Mapping[str, str]
) -> RowValidation:
    """Validate one daily partition of raw telemetry row by row with great-expectations.

    `raw` holds the contract's columns (plus `source_file`, named in duplicate reasons when present);
    `already_ingested` maps event_id to the partition key (YYYY-MM-DD) where it was validated before.
    Raises `TelemetryValidationError` when GX fails on the whole table instead of judging rows, and
    `ValueError` when a contract column is missing.
    """
    missing = [column for column in TELEMETRY_COLUMNS if column not in raw.columns]
    if missing:
        raise ValueError(f"raw telemetry lacks contract column(s) {', '.join(missing)}")

    rules = _rules(partition_day)
    return split_by_rules(raw, _checked_frame(raw, partition_day, already_ingested), rules, TELEMETRY_COLUMNS)


def split_by_rules(raw: pd.DataFrame, frame: pd.DataFrame, rules: tuple[Rule, ...], columns: tuple[str, ...]) -> RowValidation:
    """Run `rules` on the checked `frame` (one scalar row per row of `raw`, positionally indexed) and
    split `raw` into valid rows and quarantined rows with every rule each broke; null rates over `columns`."""
    results = run_expectations(frame, rules)

    reasons: dict[int, list[str]] = {}
    outcomes = []
    for rule in rules:
        result = results[rule.name]
        positions = sorted(int(p) for p in result.result["unexpected_index_list"])
        for pos, detail in zip(positions, rule.details(frame.iloc[positions])):
            # "; " separates a row's reasons, so a value quoted in a detail must not introduce one.
            reasons.setdefault(pos, []).append(f"{rule.name}: {detail.replace('; ', ', ')}")
        examples = frame["event_id"].iloc[positions[:MAX_EXAMPLE_EVENT_IDS]]
        outcomes.append(
            RuleOutcome(
                rule=rule.name,
                expectation_type=result.expectation_config.type,
                column=rule.column,
                success=bool(result.success),
                unexpected_count=len(positions),
                example_event_ids=tuple(None if pd.isna(e) else str(e) for e in examples),
            )
        )

    failed = np.zeros(len(raw), dtype=bool)
    failed[list(reasons)] = True
    quarantined = raw.iloc[np.flatnonzero(failed)].copy()
    quarantined[QUARANTINE_REASON_COLUMN] = ["; ".join(reasons[pos]) for pos in np.flatnonzero(failed)]
    null_rates = {column: float(raw[column].isna().mean()) if len(raw) else 0.0 for column in columns}
    return RowValidation(
        valid=raw.iloc[np.flatnonzero(~failed)].copy(),
        quarantined=quarantined,
        rules=tuple(outcomes),
        null_rates=null_rates,
    )
