"""A day of telemetry is streamed: no step of raw_telemetry -> validated_telemetry -> window_features
ever holds more than one row group of windows, whatever the size of the day, and streaming keeps every
guarantee (whole-file quarantine, row quarantine, sorted features, byte-identical reruns).

The row groups are made tiny here (`ROW_GROUP_ROWS`), so that a day of a few hundred windows spans
many of them; what is checked is structural (the size of every table read, written, validated or
featurized), not time or memory.
"""

import datetime as dt
import hashlib
import io

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from platform_resources import store_resources
from telemetry_factory import telemetry_table

import edge_packaging.features as edge_features
import resources.lake as lake_module
from assets import telemetry_expectations
from assets.feature_engines import compute_features_pandas
from assets.features import WINDOW_FEATURES_KEY, window_features
from assets.ingestion import raw_telemetry
from assets.validation import ROW_QUARANTINE_KEY, VALIDATED_KEY, validated_telemetry
from resources.filesystems import filesystem_and_path
from resources.landing_zone import SIDECAR_SUFFIX

DAY = dt.date(2026, 11, 5)
ROW_GROUP_ROWS = 64
ASSETS = [raw_telemetry, validated_telemetry, window_features]
DAY_KEYS = (raw_telemetry.key, VALIDATED_KEY, ROW_QUARANTINE_KEY, WINDOW_FEATURES_KEY)


@pytest.fixture
def small_row_groups(monkeypatch):
    monkeypatch.setattr(lake_module, "ROW_GROUP_ROWS", ROW_GROUP_ROWS, raising=False)


@pytest.fixture
def platform_resources(store_root) -> dict:
    return store_resources(store_root.uri)


def land(store_root, resources: dict, name: str, table: pa.Table, **write_options) -> None:
    sink = io.BytesIO()
    pq.write_table(table, sink, **write_options)
    store_root.write(resources["landing_zone"].source_uri("telemetry", f"date={DAY}", name), sink.getvalue())


def land_a_day(store_root, resources: dict) -> int:
    """Ten device uploads of 40 windows, one upload of 150 windows in row groups of 50, a bad row,
    a repeated event id in a later upload, and an unreadable file: 551 windows read."""
    for device in range(10):
        land(
            store_root,
            resources,
            f"dev{device:02d}.parquet",
            telemetry_table(40, DAY, seed=device, prefix=f"d{device:02d}"),
        )
    big = telemetry_table(150, DAY, seed=99, prefix="big").to_pylist()
    big[120]["speed_kph"] = -3.0  # quarantined for its speed
    big[140]["event_id"] = (
        telemetry_table(1, DAY, seed=0, prefix="d00").column("event_id")[0].as_py()
    )  # a repeat
    land(
        store_root,
        resources,
        "gateway.parquet",
        pa.Table.from_pylist(big, schema=telemetry_table(1, DAY).schema),
        row_group_size=50,
    )
    land(store_root, resources, "zz-extra-row.parquet", telemetry_table(1, DAY, seed=7, prefix="zz"))
    store_root.write(
        resources["landing_zone"].source_uri("telemetry", f"date={DAY}", "broken.parquet"), b"PAR1 not really"
    )
    return 10 * 40 + 150 + 1


def materialize(resources: dict) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ASSETS, partition_key=str(DAY), resources=resources, instance=dg.DagsterInstance.ephemeral()
    )


class TablesSeen:
    """The rows of every table carrying windows (the imu column) that Parquet reads or writes, that
    great-expectations validates and that the feature code computes, while a day is materialized."""

    def __init__(self, monkeypatch):
        self.parquet_reads: list[int] = []
        self.parquet_writes: list[int] = []
        self.validated_frames: list[int] = []
        self.featurized: list[int] = []

        def seen(record, method):
            def spy(*args, **kwargs):
                result = method(*args, **kwargs)
                if isinstance(result, pa.Table) and "imu" in result.column_names:
                    record.append(result.num_rows)
                return result

            return spy

        def written(record, method, position):
            def spy(*args, **kwargs):
                table = args[position]
                if "imu" in table.column_names:
                    record.append(table.num_rows)
                return method(*args, **kwargs)

            return spy

        for name in ("read", "read_row_group", "read_row_groups"):
            monkeypatch.setattr(pq.ParquetFile, name, seen(self.parquet_reads, getattr(pq.ParquetFile, name)))
        monkeypatch.setattr(pq, "read_table", seen(self.parquet_reads, pq.read_table))
        monkeypatch.setattr(
            pq.ParquetWriter, "write_table", written(self.parquet_writes, pq.ParquetWriter.write_table, 1)
        )
        monkeypatch.setattr(pq, "write_table", written(self.parquet_writes, pq.write_table, 0))

        run_expectations = telemetry_expectations.run_expectations

        def expectations_spy(frame, rules):
            self.validated_frames.append(len(frame))
            return run_expectations(frame, rules)

        monkeypatch.setattr(telemetry_expectations, "run_expectations", expectations_spy)
        compute = edge_features.compute_window_features

        def features_spy(imu, speed_kph):
            self.featurized.append(len(imu))
            return compute(imu, speed_kph)

        monkeypatch.setattr(edge_features, "compute_window_features", features_spy)


def row_group_rows(resources: dict, key: dg.AssetKey) -> list[int]:
    """Rows of each row group of the day's stored partition of `key`, from its footer."""
    fs, path = filesystem_and_path(resources["lake"].table_uri(key.path, str(DAY)))
    with fs.open_input_file(path) as file:
        metadata = pq.ParquetFile(file).metadata
    return [metadata.row_group(index).num_rows for index in range(metadata.num_row_groups)]


def test_no_step_of_a_day_holds_more_than_one_row_group_of_windows(
    platform_resources, store_root, small_row_groups, monkeypatch
):
    res = platform_resources
    rows_landed = land_a_day(store_root, res)
    seen = TablesSeen(monkeypatch)

    result = materialize(res)

    assert result.success
    # No table of windows larger than a row group was ever read or written, validated or featurized:
    # not the uploads (the 150-window one is read a row group at a time), not the partitions.
    assert seen.parquet_reads and max(seen.parquet_reads) <= ROW_GROUP_ROWS
    assert seen.parquet_writes and max(seen.parquet_writes) <= ROW_GROUP_ROWS
    assert seen.validated_frames and max(seen.validated_frames) <= ROW_GROUP_ROWS
    assert seen.featurized and max(seen.featurized) <= ROW_GROUP_ROWS
    # And the day spans many row groups, each validated on its own.
    raw_groups = row_group_rows(res, raw_telemetry.key)
    assert sum(raw_groups) == rows_landed and len(raw_groups) >= rows_landed // ROW_GROUP_ROWS
    assert max(raw_groups) <= ROW_GROUP_ROWS
    assert len(row_group_rows(res, VALIDATED_KEY)) == len(seen.validated_frames) == len(raw_groups)

    # And the day is whole: every row is valid or quarantined, and the features (sorted by event id
    # through the merge of the row groups' sorted runs) are those of the whole validated table.
    validated = res["lake"].read_table(VALIDATED_KEY.path, str(DAY))
    quarantined = res["lake"].read_table(ROW_QUARANTINE_KEY.path, str(DAY))
    assert validated.num_rows + quarantined.num_rows == rows_landed
    reasons = dict(
        zip(
            quarantined.column("event_id").to_pylist(),
            quarantined.column("quarantine_reason").to_pylist(),
            strict=True,
        )
    )
    assert len(reasons) == 2
    assert any(reason.startswith("speed_kph_in_range") for reason in reasons.values())
    assert any(
        "first occurrence came from date=2026-11-05/dev00.parquet" in reason for reason in reasons.values()
    )
    features = res["lake"].read_table(WINDOW_FEATURES_KEY.path, str(DAY))
    assert features.equals(compute_features_pandas(validated))
    validated_meta = result.asset_materializations_for_node("validated_telemetry")[0].metadata
    assert (
        validated_meta["rows_in"].value,
        validated_meta["rows_valid"].value,
        validated_meta["rows_quarantined"].value,
    ) == (
        rows_landed,
        rows_landed - 2,
        2,
    )
    raw_meta = result.asset_materializations_for_node("raw_telemetry")[0].metadata
    assert (raw_meta["files_read"].value, raw_meta["files_quarantined"].value) == (12, 1)
    assert raw_meta["dagster/row_count"].value == rows_landed


def test_a_rerun_of_the_day_writes_the_same_bytes(platform_resources, store_root, small_row_groups):
    res = platform_resources
    land_a_day(store_root, res)

    def stored_sha256() -> dict[str, str]:
        return {
            "/".join(key.path): hashlib.sha256(
                store_root.read(res["lake"].table_uri(key.path, str(DAY)))
            ).hexdigest()
            for key in DAY_KEYS
        }

    assert materialize(res).success
    first = stored_sha256()
    assert materialize(res).success
    assert stored_sha256() == first


def test_an_upload_failing_in_a_later_row_group_is_quarantined_whole(
    platform_resources, store_root, small_row_groups
):
    res = platform_resources
    land(store_root, res, "good.parquet", telemetry_table(30, DAY, seed=1, prefix="g"))
    rows = telemetry_table(120, DAY, seed=2, prefix="b").to_pylist()
    rows[110]["device_id"] = "x" * 300  # over the upload bounds' string limit, in the last row group only
    land(
        store_root,
        res,
        "bad.parquet",
        pa.Table.from_pylist(rows, schema=telemetry_table(1, DAY).schema),
        row_group_size=40,
    )

    result = materialize(res)

    assert result.success
    raw = res["lake"].read_table(raw_telemetry.key.path, str(DAY))
    assert raw.num_rows == 30  # none of the first two row groups of bad.parquet, though they were readable
    sidecar = store_root.join("quarantine", "telemetry", f"date={DAY}", f"bad.parquet{SIDECAR_SUFFIX}")
    assert "column device_id holds a value of 300 bytes" in store_root.read(sidecar).decode()


def test_a_day_where_every_upload_is_quarantined_stores_empty_partitions(
    platform_resources, store_root, small_row_groups
):
    res = platform_resources
    store_root.write(
        res["landing_zone"].source_uri("telemetry", f"date={DAY}", "broken.parquet"), b"not parquet"
    )

    result = dg.materialize(
        ASSETS,
        partition_key=str(DAY),
        resources=res,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )

    assert res["lake"].read_table(raw_telemetry.key.path, str(DAY)).num_rows == 0
    assert res["lake"].read_table(VALIDATED_KEY.path, str(DAY)).num_rows == 0
    checks = {check.check_name: check for check in result.get_asset_check_evaluations()}
    assert not checks["quarantined_share_within_limit"].passed  # a day without rows does not pass its gate
    assert "there are no rows" in checks["quarantined_share_within_limit"].description
    rules_md = result.asset_materializations_for_node("validated_telemetry")[0].metadata["rules"].value
    assert (
        rules_md.count("\n") == len(telemetry_expectations.RULE_NAMES) + 1
    )  # every rule reported, on no rows
    assert result.asset_materializations_for_node("validated_telemetry")[0].metadata["rows_in"].value == 0
