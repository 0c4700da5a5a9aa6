"""`validated_telemetry` and `telemetry_row_quarantine`: great-expectations validation of a day of
telemetry, with blocking checks that gate everything downstream."""

import datetime as dt

import dagster as dg

from assets.ingestion import raw_telemetry
from assets.partitions import daily_telemetry_partitions
from resources.lake import LakeResource

VALIDATED_KEY = dg.AssetKey("validated_telemetry")
ROW_QUARANTINE_KEY = dg.AssetKey("telemetry_row_quarantine")
QUARANTINED_SHARE_CHECK = "quarantined_share_within_limit"
NULL_RATE_CHECK = "null_rates_within_limit"
KEY_COLUMNS: tuple[str, ...] = ("event_id", "device_id", "hardware_rev", "vehicle_class", "region", "ts", "speed_kph")
EXAMPLE_ROWS = 10


class TelemetryValidationConfig(dg.Config):
    """Thresholds of the blocking checks; a day past any of them stops the lineage below it."""

    max_quarantined_share: float = 0.05
    max_key_null_rate: float = 0.01
    max_unlabelled_share: float = 1.0
    """Labels arrive late and only for some events (deployed traffic's come back through edge
    feedback), so by default the unlabelled share is reported, not gated; a team may lower it."""


def _failing_rows_md(quarantined, limit: int = EXAMPLE_ROWS) -> str:
    if quarantined.empty:
        return "none"
    with_source = "source_file" in quarantined.columns
    header = "| event_id | source_file | reason |\n| --- | --- | --- |" if with_source else "| event_id | reason |\n| --- | --- |"
    lines = [header]
    for row in quarantined.head(limit).itertuples():
        source = f" `{row.source_file}` |" if with_source else ""
        lines.append(f"| `{row.event_id}` |{source} {row.quarantine_reason} |")
    return "\n".join(lines)


def quarantined_share_check(check_name: str, asset_key: dg.AssetKey, outcome, limit: float) -> dg.AssetCheckResult:
    """The blocking gate of a validated upload set (telemetry day or feedback batch): it has valid rows
    and its quarantined share is at most `limit`; the UI shows example failing rows.

    `outcome` gives rows_in, rows_valid, rows_quarantined, quarantined_share and quarantined_examples
    (a whole `RowValidation`, or the figures of a day validated chunk by chunk)."""
    rows_in, rows_quarantined = outcome.rows_in, outcome.rows_quarantined
    passed = rows_in > 0 and outcome.rows_valid > 0 and outcome.quarantined_share <= limit
    return dg.AssetCheckResult(
        check_name=check_name,
        asset_key=asset_key,
        passed=bool(passed),
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{rows_quarantined} of {rows_in} rows quarantined ({outcome.quarantined_share:.2%}); limit {limit:.2%}"
            + ("" if rows_in else "; there are no rows")
        ),
        metadata={
            "quarantined_share": outcome.quarantined_share,
            "limit": limit,
            "rows_in": rows_in,
            "rows_quarantined": rows_quarantined,
            "failing_rows": dg.MetadataValue.md(_failing_rows_md(outcome.quarantined_examples)),
        },
    )


def _validated_event_ids_of_other_days(lake: LakeResource, partition_key: str):
    """`(partition, event ids)` of every other validated day, earlier or later, one day at a time: days
    are not always ingested in order (a backfill, a rerun), and an event is valid in one day only."""
    for key in lake.stored_partitions(VALIDATED_KEY.path):
        if key != partition_key:
            with lake.open_partition(VALIDATED_KEY.path, key) as other_day:
                yield key, other_day.read_columns(["event_id"]).column("event_id")


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            VALIDATED_KEY,
            deps=[raw_telemetry],
            group_name="telemetry",
            kinds={"parquet", "great_expectations"},
            code_version="1",
            automation_condition=dg.AutomationCondition.eager().with_label("eager"),
            description="Rows of raw_telemetry that pass every great-expectations rule of the telemetry "
            "contract (schema, imu length 1200, finite values, physical ranges, unique event_id, label "
            "domain, timestamp inside the day, speed range, not validated on another day).",
        ),
        dg.AssetSpec(
            ROW_QUARANTINE_KEY,
            deps=[raw_telemetry],
            group_name="telemetry",
            kinds={"parquet"},
            code_version="1",
            automation_condition=dg.AutomationCondition.eager().with_label("eager"),
            description="Rows of raw_telemetry that failed validation, each with every rule it broke. "
            "rows in = rows valid + rows quarantined, always.",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            QUARANTINED_SHARE_CHECK,
            asset=VALIDATED_KEY,
            blocking=True,
            description="The day has valid rows and its quarantined share is under the configured limit.",
        ),
        dg.AssetCheckSpec(
            NULL_RATE_CHECK,
            asset=VALIDATED_KEY,
            blocking=True,
            description="Null rates of key columns and the unlabelled share are under their limits.",
        ),
    ],
    partitions_def=daily_telemetry_partitions,
)
def validated_telemetry(
    context: dg.AssetExecutionContext, config: TelemetryValidationConfig, lake: LakeResource
):
    """Validate one day of raw telemetry with great-expectations and split it into valid and
    quarantined rows, streamed a row group of raw_telemetry at a time into both partitions.

    The day-wide rules (an event id repeated within the day or validated on another day) are indexed
    first from the day's event ids alone; then each row group is judged by the whole suite and its rows
    appended to the valid or the quarantined partition, so memory holds one row group, not the day.
    The metadata and checks sum up the whole day.
    """
    import pyarrow as pa

    from assets.ingestion import SOURCE_FILE_COLUMN
    from assets.telemetry_expectations import TelemetryDayValidation, event_id_index
    from edge_packaging.telemetry_contract import TELEMETRY_SCHEMA, nullable

    partition_key = context.partition_key
    partition_day = dt.date.fromisoformat(partition_key)
    valid_schema = TELEMETRY_SCHEMA.append(pa.field(SOURCE_FILE_COLUMN, pa.string()))
    quarantine_schema = nullable(valid_schema).append(pa.field("quarantine_reason", pa.string()))
    with lake.open_partition(raw_telemetry.key.path, partition_key) as raw:
        ids = raw.read_columns(["event_id", SOURCE_FILE_COLUMN], dictionary=[SOURCE_FILE_COLUMN])
        index = event_id_index(
            ids.column("event_id"),
            ids.column(SOURCE_FILE_COLUMN),
            partition_day,
            _validated_event_ids_of_other_days(lake, partition_key),
        )
        del ids
        outcome = TelemetryDayValidation(partition_day, index)
        with (
            lake.partition_writer(VALIDATED_KEY.path, partition_key, valid_schema) as valid_out,
            lake.partition_writer(ROW_QUARANTINE_KEY.path, partition_key, quarantine_schema) as refused_out,
        ):
            for valid_chunk, quarantined_chunk in outcome.validate_chunks(raw.row_groups(), raw.schema):
                valid_out.write(valid_chunk)
                refused_out.write(quarantined_chunk)
                del valid_chunk, quarantined_chunk  # written: not held while the next row group is read
    valid, quarantined = valid_out.stored, refused_out.stored
    rows_in = outcome.rows_in
    rules_md = "\n".join(
        ["| rule | great-expectations | passed | failing rows | examples |", "| --- | --- | --- | --- | --- |"]
        + [
            f"| {rule.rule} | `{rule.expectation_type}` | {'yes' if rule.success else 'no'} | "
            f"{rule.unexpected_count} | {', '.join(f'`{e}`' for e in rule.example_event_ids)} |"
            for rule in outcome.rules
        ]
    )
    yield dg.MaterializeResult(
        asset_key=VALIDATED_KEY,
        metadata={
            "dagster/row_count": valid.rows,
            "uri": dg.MetadataValue.path(valid.uri),
            "rows_in": rows_in,
            "rows_valid": valid.rows,
            "rows_quarantined": quarantined.rows,
            "quarantined_share": outcome.quarantined_share,
            "rules": dg.MetadataValue.md(rules_md),
        },
    )
    yield dg.MaterializeResult(
        asset_key=ROW_QUARANTINE_KEY,
        metadata={
            "dagster/row_count": quarantined.rows,
            "uri": dg.MetadataValue.path(quarantined.uri),
            "reasons": dg.MetadataValue.json({str(k): v for k, v in outcome.reason_counts.most_common()}),
            "examples": dg.MetadataValue.md(_failing_rows_md(outcome.quarantined_examples)),
        },
    )

    yield quarantined_share_check(QUARANTINED_SHARE_CHECK, VALIDATED_KEY, outcome, config.max_quarantined_share)
    over_limit = {
        column: rate
        for column, rate in outcome.null_rates.items()
        if (column in KEY_COLUMNS and rate > config.max_key_null_rate)
        or (column == "label" and rate > config.max_unlabelled_share)
    }
    yield dg.AssetCheckResult(
        check_name=NULL_RATE_CHECK,
        asset_key=VALIDATED_KEY,
        passed=not over_limit,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            "null rates within limits"
            if not over_limit
            else "over limit: " + ", ".join(f"{column} {rate:.2%}" for column, rate in over_limit.items())
        ),
        metadata={
            "null_rates": dg.MetadataValue.json(outcome.null_rates),
            "max_key_null_rate": config.max_key_null_rate,
            "max_unlabelled_share": config.max_unlabelled_share,
        },
    )
