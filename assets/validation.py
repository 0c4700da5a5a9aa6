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
    and its quarantined share is at most `limit`; the UI shows example failing rows."""
    rows_in, rows_quarantined = outcome.rows_in, len(outcome.quarantined)
    passed = rows_in > 0 and len(outcome.valid) > 0 and outcome.quarantined_share <= limit
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
            "failing_rows": dg.MetadataValue.md(_failing_rows_md(outcome.quarantined)),
        },
    )


def _event_ids_of_other_days(lake: LakeResource, partition_key: str) -> dict[str, str]:
    """event_id -> partition for every event already validated on another day, earlier or later:
    days are not always ingested in order (a backfill, a rerun), and an event is valid in one day only."""
    validated: dict[str, str] = {}
    for key in lake.stored_partitions(VALIDATED_KEY.path):
        if key != partition_key:
            ids = lake.read_table(VALIDATED_KEY.path, key, columns=["event_id"]).column("event_id")
            validated.update(dict.fromkeys(ids.to_pylist(), key))
    return validated


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
    quarantined rows."""
    import pyarrow as pa

    from assets.ingestion import SOURCE_FILE_COLUMN
    from assets.telemetry_expectations import validate_telemetry_partition
    from edge_packaging.telemetry_contract import TELEMETRY_SCHEMA, nullable

    partition_key = context.partition_key
    raw = lake.read_table(raw_telemetry.key.path, partition_key).to_pandas()
    outcome = validate_telemetry_partition(
        raw,
        partition_day=dt.date.fromisoformat(partition_key),
        already_ingested=_event_ids_of_other_days(lake, partition_key),
    )
    valid_schema = TELEMETRY_SCHEMA.append(pa.field(SOURCE_FILE_COLUMN, pa.string()))
    quarantine_schema = nullable(valid_schema).append(pa.field("quarantine_reason", pa.string()))
    valid = lake.write_table(
        VALIDATED_KEY.path,
        partition_key,
        pa.Table.from_pandas(outcome.valid, schema=valid_schema, preserve_index=False),
    )
    quarantined = lake.write_table(
        ROW_QUARANTINE_KEY.path,
        partition_key,
        pa.Table.from_pandas(outcome.quarantined, schema=quarantine_schema, preserve_index=False),
    )
    rows_in = len(raw)
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
    reason_counts = outcome.quarantined["quarantine_reason"].value_counts() if quarantined.rows else {}
    yield dg.MaterializeResult(
        asset_key=ROW_QUARANTINE_KEY,
        metadata={
            "dagster/row_count": quarantined.rows,
            "uri": dg.MetadataValue.path(quarantined.uri),
            "reasons": dg.MetadataValue.json({str(k): int(v) for k, v in dict(reason_counts).items()}),
            "examples": dg.MetadataValue.md(_failing_rows_md(outcome.quarantined)),
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
