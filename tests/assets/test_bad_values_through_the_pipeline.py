"""One bad value in one row is that row's problem: through every asset of the day, whatever the column.

The row rules alone quarantine such rows; these tests send each kind of bad value through
`raw_telemetry -> validated_telemetry -> window_features`, where a null in a column the contract
declares non-nullable, or a NaN, used to fail the day when the lake or the row quarantine was written.
"""

import datetime as dt
import math
import sys

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from telemetry_factory import telemetry_table

from assets.features import WINDOW_FEATURES_KEY, window_features
from assets.ingestion import raw_telemetry
from assets.validation import NULL_RATE_CHECK, ROW_QUARANTINE_KEY, VALIDATED_KEY, validated_telemetry
from edge_packaging.telemetry_contract import TELEMETRY_SCHEMA, nullable
from resources.lake import LakeResource
from resources.landing_zone import LandingZoneResource
from resources.spark import SparkResource, local_spark_config

DAY = dt.date(2026, 11, 1)
ROWS = 200  # one bad row is 0.5%: under the default null-rate and quarantined-share gates
BAD_ROW = 3

BAD_VALUES = {
    **{f"null {name}": (name, None) for name in TELEMETRY_SCHEMA.names if name != "label"},
    "NaN speed_kph": ("speed_kph", math.nan),
    "infinite speed_kph": ("speed_kph", math.inf),
    "negative speed_kph": ("speed_kph", -5.0),
    "infinite imu value": ("imu", [math.inf] * 1200),
    "NaN imu value": ("imu", [math.nan] * 1200),
    "short imu window": ("imu", [0.0] * 600),
    "ts on another day": ("ts", dt.datetime(2026, 11, 5, tzinfo=dt.timezone.utc)),
    "label outside the classes": ("label", "not_a_class"),
}


def run_day(tmp_path, rows: list[dict]) -> tuple[dg.ExecuteInProcessResult, dict]:
    resources = {
        "lake": LakeResource(uri=str(tmp_path / "lake")),
        "landing_zone": LandingZoneResource(landing_root=str(tmp_path / "landing"), quarantine_root=str(tmp_path / "quarantine")),
        "pyspark": SparkResource(spark_config=local_spark_config(sys.executable)),
    }
    folder = tmp_path / "landing" / "telemetry" / f"date={DAY}"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=nullable(TELEMETRY_SCHEMA)), folder / "upload.parquet")
    result = dg.materialize(
        [raw_telemetry, validated_telemetry, window_features],
        partition_key=str(DAY),
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    return result, resources


@pytest.mark.parametrize(("column", "value"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_a_bad_value_quarantines_its_row_and_the_day_flows(tmp_path, column, value):
    rows = telemetry_table(ROWS, DAY).to_pylist()
    rows[BAD_ROW][column] = value
    bad_event = rows[BAD_ROW]["event_id"]

    result, resources = run_day(tmp_path, rows)

    assert result.success
    lake = resources["lake"]
    assert lake.read_table(raw_telemetry.key.path, str(DAY)).num_rows == ROWS  # raw keeps every row
    quarantined = lake.read_table(ROW_QUARANTINE_KEY.path, str(DAY)).to_pylist()
    assert len(quarantined) == 1 and quarantined[0]["quarantine_reason"]
    assert quarantined[0]["event_id"] == bad_event
    assert lake.read_table(VALIDATED_KEY.path, str(DAY)).num_rows == ROWS - 1
    assert lake.read_table(WINDOW_FEATURES_KEY.path, str(DAY)).num_rows == ROWS - 1


def test_nulls_over_the_key_column_limit_stop_the_day_at_the_null_rate_gate(tmp_path):
    rows = telemetry_table(50, DAY).to_pylist()
    for row in rows[:2]:  # 4% of region missing, over the 1% limit, under the 5% quarantined-share limit
        row["region"] = None

    result, resources = run_day(tmp_path, rows)

    assert not result.success
    gate = {check.check_name: check for check in result.get_asset_check_evaluations()}[NULL_RATE_CHECK]
    assert not gate.passed and "region 4.00%" in gate.description
    assert resources["lake"].read_table(ROW_QUARANTINE_KEY.path, str(DAY)).num_rows == 2
    assert not resources["lake"].stored_partitions(WINDOW_FEATURES_KEY.path)
