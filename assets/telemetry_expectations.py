"""Row-level validation of one daily partition of raw telemetry with great-expectations.

Every rule is one great-expectations expectation, run over a scalar frame derived from the partition:
the contract's scalar columns plus helper columns computed from the imu arrays with numpy (GX cannot
look inside a list column, so the object `imu` column never reaches it). Rows named in any failing
expectation's `unexpected_index_list` are quarantined with the reason of every rule they broke; the
rest pass. No row is lost: `len(valid) + len(quarantined) == len(raw)`.

A day is validated whole (`validate_telemetry_partition`, a frame in memory) or a chunk of rows at a
time (`TelemetryDayValidation`, what the asset does, so that a day of a million windows is never in
memory): every rule judges a row alone, except the event_id rules, which read an `EventIdIndex` of
the whole day's ids computed first; both ways give the same rows, reasons and rule outcomes.

The module imports neither Dagster nor great-expectations at import time (GX costs about 5 s to
import), so the code location stays cheap to load; GX is imported on the first validation.
"""

import datetime as dt
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

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
QUARANTINED_EXAMPLE_ROWS = 10

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
    def rows_valid(self) -> int:
        return len(self.valid)

    @property
    def rows_quarantined(self) -> int:
        return len(self.quarantined)

    @property
    def quarantined_share(self) -> float:
        return len(self.quarantined) / self.rows_in if self.rows_in else 0.0

    @property
    def quarantined_examples(self) -> pd.DataFrame:
        """The first quarantined rows, at most QUARANTINED_EXAMPLE_ROWS."""
        return self.quarantined.head(QUARANTINED_EXAMPLE_ROWS)

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


@dataclass(frozen=True, eq=False)
class EventIdIndex:
    """What the day-wide event_id rules need to know about each row of a day, computed once from the
    day's event ids alone, so that the rows themselves can be validated a chunk at a time.

    Per row, in the day's order: whether an earlier row of the day carries its event id, the file of
    the kept first occurrence, and the other partition that already validated it. 16 bytes a row (not
    the rows): 16 MB for a day of a million windows.
    """

    repeat: np.ndarray
    """float64: 0 for an event id's first row of the day, 1 for a later one (a repeat); NaN for a null
    id (GX leaves nulls out, so such a row fails only event_id_not_null)."""
    first_source: np.ndarray
    """int32 index into `source_names` of the first occurrence's file; -1 for a null id."""
    source_names: tuple[str, ...]
    ingested: np.ndarray
    """int32 index into `ingested_names` of the other partition that validated the event; -1 for none."""
    ingested_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.repeat)

    def columns(self, start: int, stop: int) -> pd.DataFrame:
        """The checked frame's event_id helper columns for rows [start, stop) of the day, indexed from 0."""
        # A trailing None, so that index -1 (no source, not ingested) reads as None.
        sources = np.array([*self.source_names, None], dtype=object)
        ingested = np.array([*self.ingested_names, None], dtype=object)
        return pd.DataFrame(
            {
                "event_id_repeat": self.repeat[start:stop],
                "event_id_first_source": sources[self.first_source[start:stop]],
                "ingested_partition": ingested[self.ingested[start:stop]],
            }
        )


def event_id_index(
    event_ids: "pa.Array | pa.ChunkedArray",
    source_files: "pa.Array | pa.ChunkedArray | None",
    partition_day: dt.date,
    other_partitions: "Iterable[tuple[str, pa.Array | pa.ChunkedArray]]",
) -> EventIdIndex:
    """Index a day's event ids (in row order) against themselves and against `other_partitions`, the
    event ids already validated in other partitions as `(partition key, ids)`, read one partition at a
    time; where an event is in several, the last one given names it. An entry for this very day is the
    partition being re-validated, not an earlier ingestion, and is ignored. `source_files` may be
    dictionary-encoded (as read from the lake, a few bytes a row).

    Vectorized over the ids' dictionary codes, with no Python object per row: building it costs about
    120 bytes a row of the day at its peak (measured at a million rows), and the index keeps 16.
    """
    import pyarrow.compute as pc

    encoded = _dictionary_encoded(event_ids)
    unique_ids = encoded.dictionary
    codes = _codes(encoded)
    rows = len(codes)
    known = codes >= 0
    positions = np.arange(rows, dtype=np.int64)
    first_row_of_id = np.full(len(unique_ids), rows, dtype=np.int64)
    np.minimum.at(first_row_of_id, codes[known], positions[known])
    first_row = np.where(known, first_row_of_id[np.where(known, codes, 0)], positions)
    repeat = np.where(known, (first_row != positions).astype(np.float64), np.nan)
    del first_row_of_id, positions

    if source_files is None:
        source_codes, source_names = np.zeros(rows, dtype=np.int32), ("an unnamed file",)
    else:
        sources = _dictionary_encoded(source_files)
        source_codes, source_names = _codes(sources), tuple(sources.dictionary.to_pylist())
    first_source = np.where(known, source_codes[first_row], -1).astype(np.int32)
    del first_row, source_codes

    this_day = partition_day.isoformat()
    ingested_of_id = np.full(len(unique_ids) + 1, -1, dtype=np.int32)  # the last entry: a null id
    ingested_names: list[str] = []
    for key, other_ids in other_partitions:
        if key == this_day or not len(unique_ids):
            continue
        found = pc.is_in(unique_ids, value_set=_combined(other_ids).cast(pa.string()).drop_null())
        found = found.to_numpy(zero_copy_only=False)
        if found.any():
            ingested_names.append(key)
            ingested_of_id[:-1][found] = len(ingested_names) - 1
    ingested = ingested_of_id[codes]  # code -1 reads the null id's entry
    return EventIdIndex(repeat, first_source, source_names, ingested, tuple(ingested_names))


def _dictionary_encoded(array: "pa.Array | pa.ChunkedArray") -> "pa.DictionaryArray":
    """`array` of strings as one dictionary array (nulls stay null), whether or not it was encoded."""
    import pyarrow.compute as pc

    if isinstance(array, pa.ChunkedArray) and pa.types.is_dictionary(array.type):
        return pa.table({"values": array}).unify_dictionaries().column("values").combine_chunks()
    if pa.types.is_dictionary(array.type):
        return array
    return pc.dictionary_encode(_combined(array).cast(pa.string()))


def _codes(encoded: "pa.DictionaryArray") -> np.ndarray:
    """The dictionary codes of `encoded` as int32, -1 for a null."""
    return encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)


def _combined(array: "pa.Array | pa.ChunkedArray") -> "pa.Array":
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _event_id_index_of_frame(
    raw: pd.DataFrame, partition_day: dt.date, already_ingested: Mapping[str, str]
) -> EventIdIndex:
    """`event_id_index` of a whole frame, with the already-validated events given as a mapping."""
    by_partition: dict[str, list[str]] = {}
    for event_id, key in already_ingested.items():
        by_partition.setdefault(key, []).append(event_id)
    sources = raw["source_file"] if "source_file" in raw.columns else None
    return event_id_index(
        pa.array(raw["event_id"].astype(object), type=pa.string(), from_pandas=True),
        None if sources is None else pa.array(sources.astype(object), type=pa.string(), from_pandas=True),
        partition_day,
        ((key, pa.array(ids, type=pa.string())) for key, ids in by_partition.items()),
    )


def _checked_frame(raw: pd.DataFrame, event_columns: pd.DataFrame) -> pd.DataFrame:
    """The scalar frame the rules look at, one row per input row, positionally indexed: the contract's
    scalar columns, the imu summary and the event_id helper columns of the same rows."""
    frame = raw[[c for c in TELEMETRY_COLUMNS if c != "imu"]].reset_index(drop=True)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return pd.concat([frame, imu_summary(raw["imu"]), event_columns.reset_index(drop=True)], axis=1)


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
    columns = list(dict.fromkeys(rule.column for rule in rules))
    # Validating the batch directly, not through a ValidationDefinition, skips serialising every result
    # into the ephemeral context's results store: a third of the validation's time, for a store
    # nothing reads.
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame[columns]})
    run = batch.validate(suite, result_format=_RESULT_FORMAT)

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
    index = _event_id_index_of_frame(raw, partition_day, already_ingested)
    return split_by_rules(raw, _checked_frame(raw, index.columns(0, len(raw))), rules, TELEMETRY_COLUMNS)


def judge_rows(
    frame: pd.DataFrame, rules: tuple[Rule, ...]
) -> tuple[np.ndarray, list[str], tuple[RuleOutcome, ...]]:
    """Run `rules` on the checked `frame` (positionally indexed) with great-expectations: the sorted
    positions of the rows that broke a rule, the quarantine reason of each (every rule it broke, as
    "rule_name: detail", joined with "; "), and each rule's outcome."""
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

    failed = np.array(sorted(reasons), dtype=np.int64)
    return failed, ["; ".join(reasons[int(pos)]) for pos in failed], tuple(outcomes)


def split_by_rules(raw: pd.DataFrame, frame: pd.DataFrame, rules: tuple[Rule, ...], columns: tuple[str, ...]) -> RowValidation:
    """Run `rules` on the checked `frame` (one scalar row per row of `raw`, positionally indexed) and
    split `raw` into valid rows and quarantined rows with every rule each broke; null rates over `columns`."""
    failed_positions, reasons, outcomes = judge_rows(frame, rules)
    failed = np.zeros(len(raw), dtype=bool)
    failed[failed_positions] = True
    quarantined = raw.iloc[failed_positions].copy()
    quarantined[QUARANTINE_REASON_COLUMN] = reasons
    null_rates = {column: float(raw[column].isna().mean()) if len(raw) else 0.0 for column in columns}
    return RowValidation(
        valid=raw.iloc[np.flatnonzero(~failed)].copy(),
        quarantined=quarantined,
        rules=outcomes,
        null_rates=null_rates,
    )


@dataclass
class TelemetryDayValidation:
    """A day of raw telemetry validated a chunk of rows at a time, and what the day adds up to.

    Every rule is a row rule, and the day-wide ones (an event id repeated within the day, or validated
    on another day) read the `EventIdIndex` computed from the day's ids beforehand, so each chunk is
    judged exactly as the whole day would be, by the same great-expectations suite. What is kept across
    chunks is the day's figures: rows, per-rule counts and examples, null counts, the first quarantined
    rows and the count of each quarantine reason.
    """

    partition_day: dt.date
    index: EventIdIndex
    rows_in: int = 0
    rows_valid: int = 0
    rows_quarantined: int = 0
    rules: tuple[RuleOutcome, ...] = ()
    null_counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TELEMETRY_COLUMNS, 0))
    quarantined_examples: pd.DataFrame = field(default_factory=pd.DataFrame)
    """The day's first quarantined rows (event_id, source_file, quarantine_reason), at most
    QUARANTINED_EXAMPLE_ROWS."""
    reason_counts: Counter = field(default_factory=Counter)

    def validate_chunks(
        self, chunks: Iterable[pa.Table], schema: pa.Schema
    ) -> Iterator[tuple[pa.Table, pa.Table]]:
        """Validate the day's rows, chunk after chunk in the day's order, as `(valid, quarantined)`
        pairs; an empty day is judged as one empty chunk of `schema`, so every rule still reports."""
        validated_any = False
        for chunk in chunks:
            validated_any = True
            split = self.validate_chunk(chunk)
            del chunk  # released before the next chunk is read: one chunk is held at a time
            yield split
            del split
        if not validated_any:
            yield self.validate_chunk(schema.empty_table())
        if self.rows_in != len(self.index):
            raise ValueError(f"validated {self.rows_in} rows of a day of {len(self.index)} indexed event ids")

    def validate_chunk(self, chunk: pa.Table) -> tuple[pa.Table, pa.Table]:
        """Validate the day's next rows: its valid rows and its quarantined rows with their reasons (the
        chunk's columns, plus `quarantine_reason`), in input order."""
        missing = [column for column in TELEMETRY_COLUMNS if column not in chunk.column_names]
        if missing:
            raise ValueError(f"raw telemetry lacks contract column(s) {', '.join(missing)}")
        start, stop = self.rows_in, self.rows_in + chunk.num_rows
        raw = chunk.to_pandas()  # imu windows become numpy views on the Arrow buffers, not copies
        frame = _checked_frame(raw, self.index.columns(start, stop))
        failed_positions, reasons, outcomes = judge_rows(frame, _rules(self.partition_day))
        failed = np.zeros(chunk.num_rows, dtype=bool)
        failed[failed_positions] = True
        valid = chunk.filter(pa.array(~failed)) if len(failed_positions) else chunk
        quarantined = chunk.filter(pa.array(failed)).append_column(
            QUARANTINE_REASON_COLUMN, pa.array(reasons, type=pa.string())
        )
        self.rows_in = stop
        self.rows_valid += valid.num_rows
        self.rows_quarantined += quarantined.num_rows
        self.rules = _merged_outcomes(self.rules, outcomes)
        for column in TELEMETRY_COLUMNS:
            self.null_counts[column] += int(raw[column].isna().sum())
        self.reason_counts.update(reasons)
        if len(self.quarantined_examples) < QUARANTINED_EXAMPLE_ROWS and quarantined.num_rows:
            columns = ("event_id", "source_file", QUARANTINE_REASON_COLUMN)
            shown = [column for column in columns if column in quarantined.column_names]
            wanted = QUARANTINED_EXAMPLE_ROWS - len(self.quarantined_examples)
            more = quarantined.select(shown).slice(0, wanted).to_pandas()
            self.quarantined_examples = pd.concat([self.quarantined_examples, more], ignore_index=True)
        return valid, quarantined

    @property
    def quarantined_share(self) -> float:
        return self.rows_quarantined / self.rows_in if self.rows_in else 0.0

    @property
    def null_rates(self) -> dict[str, float]:
        """Share of nulls per contract column over the day (0.0 on an empty day); for `label` the
        unlabelled share."""
        rows = self.rows_in
        return {column: count / rows if rows else 0.0 for column, count in self.null_counts.items()}

    def rule(self, name: str) -> RuleOutcome:
        for outcome in self.rules:
            if outcome.rule == name:
                return outcome
        raise KeyError(name)


def _merged_outcomes(day: tuple[RuleOutcome, ...], chunk: tuple[RuleOutcome, ...]) -> tuple[RuleOutcome, ...]:
    """The day's rule outcomes after one more chunk: a rule succeeds if it succeeded on every chunk."""
    if not day:
        return chunk
    return tuple(
        RuleOutcome(
            rule=so_far.rule,
            expectation_type=so_far.expectation_type,
            column=so_far.column,
            success=so_far.success and more.success,
            unexpected_count=so_far.unexpected_count + more.unexpected_count,
            example_event_ids=(so_far.example_event_ids + more.example_event_ids)[:MAX_EXAMPLE_EVENT_IDS],
        )
        for so_far, more in zip(day, chunk, strict=True)
    )
