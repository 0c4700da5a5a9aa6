"""raw_telemetry -> validated_telemetry -> harsh_event/window_features, materialized per partition."""

import datetime as dt
import io
import json
import sys

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from platform_resources import store_resources
from telemetry_factory import telemetry_table

from assets.features import WINDOW_FEATURES_KEY, window_features
from assets.ingestion import raw_telemetry
from assets.validation import (
    NULL_RATE_CHECK,
    QUARANTINED_SHARE_CHECK,
    ROW_QUARANTINE_KEY,
    VALIDATED_KEY,
    validated_telemetry,
)
from resources.lake import LakeResource
from resources.landing_zone import SIDECAR_SUFFIX, LandingZoneResource
from resources.spark import SparkResource, local_spark_config

ASSETS = [raw_telemetry, validated_telemetry, window_features]
DAY_1, DAY_2 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)


@pytest.fixture
def platform_resources(store_root) -> dict:
    """The platform's stores on each kind of store: a temporary folder, then an S3 prefix."""
    return store_resources(store_root.uri)


def land(store_root, resources: dict, day: dt.date, name: str, content: pa.Table | bytes) -> str:
    if isinstance(content, pa.Table):
        sink = io.BytesIO()
        pq.write_table(content, sink)
        content = sink.getvalue()
    return store_root.write(resources["landing_zone"].source_uri("telemetry", f"date={day}", name), content)


def materialize(resources: dict, instance: dg.DagsterInstance, day: dt.date, **kwargs) -> dg.ExecuteInProcessResult:
    return dg.materialize(ASSETS, partition_key=str(day), resources=resources, instance=instance, **kwargs)


def rows(resources: dict, key: dg.AssetKey, day: dt.date) -> pa.Table:
    return resources["lake"].read_table(key.path, str(day))


@pytest.fixture
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


def test_a_day_with_bad_files_and_bad_rows_still_flows_and_loses_nothing(platform_resources, instance, store_root):
    res = platform_resources
    a = land(store_root, res, DAY_1, "a.parquet", telemetry_table(60, DAY_1, seed=1, prefix="a"))
    land(store_root, res, DAY_1, "b.parquet", telemetry_table(40, DAY_1, seed=2, prefix="b"))
    land(store_root, res, DAY_1, "truncated.parquet", store_root.read(a)[:500])
    land(store_root, res, DAY_1, "no-label-column.parquet", telemetry_table(5, DAY_1, prefix="c").drop_columns(["label"]))
    with_extra = telemetry_table(10, DAY_1, seed=3, prefix="d").append_column("firmware", pa.array(["9"] * 10))
    land(store_root, res, DAY_1, "extra.parquet", with_extra)

    result = materialize(res, instance, DAY_1)
    assert result.success

    quarantine = store_root.join("quarantine", "telemetry", f"date={DAY_1}")
    reasons = {
        name: json.loads(store_root.read(f"{quarantine}/{name}"))["reason"]
        for name in store_root.names(quarantine)
        if name.endswith(SIDECAR_SUFFIX)
    }
    assert reasons["truncated.parquet.quarantine.json"].startswith("unreadable Parquet")
    assert reasons["no-label-column.parquet.quarantine.json"] == "schema: missing column(s) label"
    landing = res["landing_zone"].source_uri("telemetry", f"date={DAY_1}")
    assert store_root.names(landing) == ["a.parquet", "b.parquet", "extra.parquet"]

    raw = rows(res, raw_telemetry.key, DAY_1)
    assert raw.num_rows == 110
    assert rows(res, VALIDATED_KEY, DAY_1).num_rows == 110
    features = rows(res, WINDOW_FEATURES_KEY, DAY_1)
    assert features.num_rows == 110
    assert features.column("event_id").to_pylist() == sorted(raw.column("event_id").to_pylist())
    raw_meta = result.asset_materializations_for_node("raw_telemetry")[0].metadata
    assert raw_meta["files_quarantined"].value == 2
    assert raw_meta["extra_columns_dropped"].value == ["firmware"]

    # A rerun reads the same landing files and replaces the partition: no duplicate rows.
    assert materialize(res, instance, DAY_1).success
    assert rows(res, raw_telemetry.key, DAY_1).num_rows == 110
    assert rows(res, WINDOW_FEATURES_KEY, DAY_1).num_rows == 110


def test_bad_rows_are_quarantined_with_reasons_and_reuploads_are_caught(platform_resources, instance, store_root):
    res = platform_resources
    day1_table = telemetry_table(100, DAY_1, seed=1, prefix="a")
    land(store_root, res, DAY_1, "a.parquet", day1_table)
    assert materialize(res, instance, DAY_1).success

    day2 = telemetry_table(100, DAY_2, seed=2, prefix="b").to_pylist()
    day2[3]["imu"] = [float("nan")] * 1200
    day2[4]["imu"] = day2[4]["imu"][:600]
    reupload = day1_table.slice(0, 1).to_pylist()[0]
    reupload["ts"] = day2[5]["ts"]
    day2.append(reupload)
    land(store_root, res, DAY_2, "b.parquet", pa.Table.from_pylist(day2, schema=day1_table.schema))

    result = materialize(res, instance, DAY_2)
    assert result.success
    quarantined = rows(res, ROW_QUARANTINE_KEY, DAY_2).to_pydict()
    reason_of = dict(zip(quarantined["event_id"], quarantined["quarantine_reason"], strict=True))
    assert set(reason_of) == {day2[3]["event_id"], day2[4]["event_id"], reupload["event_id"]}
    assert "imu_values_finite" in reason_of[day2[3]["event_id"]]
    assert "imu_window_length" in reason_of[day2[4]["event_id"]]
    assert str(DAY_1) in reason_of[reupload["event_id"]]
    assert rows(res, VALIDATED_KEY, DAY_2).num_rows == 98
    assert rows(res, WINDOW_FEATURES_KEY, DAY_2).num_rows == 98
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks[QUARANTINED_SHARE_CHECK].passed  # 3 of 101 is under the 5% default
    assert checks[NULL_RATE_CHECK].passed


def test_a_day_over_the_quarantine_limit_is_blocked_before_features(platform_resources, instance, store_root):
    res = platform_resources
    table = telemetry_table(50, DAY_1, seed=5)
    speeds = table.column("speed_kph").to_numpy().copy()
    speeds[:10] = -40.0  # 20% of rows break the speed range
    table = table.set_column(6, "speed_kph", pa.array(speeds))
    land(store_root, res, DAY_1, "a.parquet", table)

    result = materialize(res, instance, DAY_1, raise_on_error=False)
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    gate = checks[QUARANTINED_SHARE_CHECK]
    assert not gate.passed
    assert gate.metadata["rows_quarantined"].value == 10
    assert "speed_kph_in_range" in gate.metadata["failing_rows"].value
    materialized = {event.asset_key for event in result.get_asset_materialization_events()}
    assert VALIDATED_KEY in materialized
    assert WINDOW_FEATURES_KEY not in materialized
    assert not res["lake"].stored_partitions(WINDOW_FEATURES_KEY.path)
    assert not pc.any(pc.equal(rows(res, VALIDATED_KEY, DAY_1).column("speed_kph"), -40.0)).as_py()


def test_a_day_without_uploads_fails_with_a_clear_error(platform_resources, instance):
    result = materialize(platform_resources, instance, DAY_1, raise_on_error=False)
    assert not result.success
    failure = result.failure_data_for_node("raw_telemetry")
    assert "no telemetry uploads for 2026-11-01" in failure.error.message


def test_a_misnamed_file_is_quarantined_and_a_symlink_is_not_ingested_while_the_day_flows(tmp_path, instance):
    import os

    from store_roots import StoreRoot

    store_root = StoreRoot("local", str(tmp_path))
    res = {
        "lake": LakeResource(uri=store_root.join("lake")),
        "landing_zone": LandingZoneResource(landing_root=store_root.join("landing"), quarantine_root=store_root.join("quarantine")),
        "pyspark": SparkResource(spark_config=local_spark_config(sys.executable)),
    }
    good = land(store_root, res, DAY_1, "a.parquet", telemetry_table(20, DAY_1, seed=1, prefix="a"))
    folder = os.path.dirname(good)
    secret = tmp_path / "elsewhere.parquet"
    secret.write_bytes(store_root.read(land(store_root, res, DAY_2, "x.parquet", telemetry_table(7, DAY_2, prefix="x"))))
    os.symlink(secret, os.path.join(folder, "link.parquet"))
    with open(os.path.join(os.fsencode(folder), b"bad\xff.parquet"), "wb") as stream:
        stream.write(store_root.read(good))

    result = materialize(res, instance, DAY_1)

    assert result.success
    assert rows(res, raw_telemetry.key, DAY_1).num_rows == 20  # neither the link's 7 rows nor the misnamed copy
    quarantine = store_root.join("quarantine", "telemetry", f"date={DAY_1}")
    sidecars = [name for name in store_root.names(quarantine) if name.endswith(SIDECAR_SUFFIX)]
    (sidecar,) = sidecars
    assert json.loads(store_root.read(f"{quarantine}/{sidecar}"))["reason"].startswith("file name is not UTF-8")
    assert os.path.islink(os.path.join(folder, "link.parquet"))


def test_any_error_a_file_raises_in_the_reader_quarantines_that_file_only(platform_resources, instance, store_root, monkeypatch):
    import assets.ingestion as ingestion

    res = platform_resources
    land(store_root, res, DAY_1, "a.parquet", telemetry_table(20, DAY_1, seed=1, prefix="a"))
    land(store_root, res, DAY_1, "b.parquet", telemetry_table(5, DAY_1, seed=2, prefix="b"))
    real_open = ingestion.open_upload

    def reader_that_breaks_on_b(uri, conform):
        if uri.endswith("/b.parquet"):
            raise RecursionError("maximum recursion depth exceeded")
        return real_open(uri, conform)

    monkeypatch.setattr(ingestion, "open_upload", reader_that_breaks_on_b)
    result = materialize(res, instance, DAY_1)

    assert result.success
    assert rows(res, raw_telemetry.key, DAY_1).num_rows == 20
    sidecar = store_root.join("quarantine", "telemetry", f"date={DAY_1}", f"b.parquet{SIDECAR_SUFFIX}")
    assert json.loads(store_root.read(sidecar))["reason"] == "RecursionError: maximum recursion depth exceeded"


def test_an_event_in_a_day_ingested_after_the_next_day_is_valid_in_one_day_only(platform_resources, instance, store_root):
    res = platform_resources
    day2 = telemetry_table(30, DAY_2, seed=2, prefix="b")
    land(store_root, res, DAY_2, "b.parquet", day2)
    assert materialize(res, instance, DAY_2).success
    resent = day2.slice(0, 1).to_pylist()[0]  # the same event, sent again in the earlier day's upload
    resent["ts"] = telemetry_table(1, DAY_1).column("ts")[0].as_py()
    day1 = pa.concat_tables([telemetry_table(20, DAY_1, seed=1, prefix="a"), pa.Table.from_pylist([resent], schema=day2.schema)])
    land(store_root, res, DAY_1, "a.parquet", day1)

    assert materialize(res, instance, DAY_1).success

    valid_ids = set(rows(res, VALIDATED_KEY, DAY_1).column("event_id").to_pylist())
    valid_ids &= set(rows(res, VALIDATED_KEY, DAY_2).column("event_id").to_pylist())
    assert valid_ids == set()
    quarantined = rows(res, ROW_QUARANTINE_KEY, DAY_1).to_pydict()
    assert quarantined["event_id"] == [resent["event_id"]] and str(DAY_2) in quarantined["quarantine_reason"][0]
