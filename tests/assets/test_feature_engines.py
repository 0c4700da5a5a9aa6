"""Both feature engines compute the same features from the same partition."""

import datetime as dt

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from telemetry_factory import telemetry_table

from assets.feature_engines import (
    compute_features_pandas,
    feature_schema,
    merge_sorted_runs,
    row_group_tasks,
    stream_features_pandas,
)
from assets.features import WINDOW_FEATURES_KEY, window_features
from assets.ingestion import raw_telemetry
from assets.validation import validated_telemetry
from edge_packaging.features import FEATURE_NAMES, compute_window_features
from edge_packaging.telemetry_contract import imu_windows

DAY = dt.date(2026, 11, 3)


def test_pandas_engine_equals_the_numpy_definition_row_for_row():
    table = telemetry_table(300, DAY, seed=11)
    features = compute_features_pandas(table)
    assert features.schema.equals(feature_schema())
    order = np.argsort(table.column("event_id").to_numpy(zero_copy_only=False))
    expected = compute_window_features(imu_windows(table.column("imu")), table.column("speed_kph").to_numpy())[order]
    actual = np.stack([features.column(name).to_numpy() for name in FEATURE_NAMES], axis=1)
    np.testing.assert_array_equal(actual, expected)


def test_pandas_engine_handles_an_empty_partition():
    assert compute_features_pandas(telemetry_table(3, DAY).slice(0, 0)).num_rows == 0


def test_the_spark_engine_gets_one_task_per_row_group(tmp_path):
    """The workers read row groups themselves: the driver lists them from the footer."""
    path = tmp_path / "validated.parquet"
    pq.write_table(telemetry_table(50, DAY, seed=3), path, row_group_size=20)
    assert row_group_tasks(str(path)) == [(str(path), 0), (str(path), 1), (str(path), 2)]


@pytest.mark.slow
def test_spark_and_pandas_engines_agree_on_the_same_partition(platform_resources):
    """Materialize the partition once per engine through Dagster and compare the stored tables."""
    landing = platform_resources["landing_zone"].landing_root
    path = f"{landing}/telemetry/date={DAY}"
    import os

    os.makedirs(path)
    for part in range(3):  # several files, so Spark splits the work into several tasks
        pq.write_table(telemetry_table(400, DAY, seed=20 + part, prefix=f"p{part}"), f"{path}/part-{part}.parquet")
    instance = dg.DagsterInstance.ephemeral()
    assets = [raw_telemetry, validated_telemetry, window_features]
    lake = platform_resources["lake"]
    stored = {}
    for engine in ("pandas", "spark"):
        result = dg.materialize(
            assets,
            partition_key=str(DAY),
            resources=platform_resources,
            instance=instance,
            run_config={"ops": {"harsh_event__window_features": {"config": {"engine": engine}}}},
        )
        assert result.success
        meta = result.asset_materializations_for_node("harsh_event__window_features")[0].metadata
        assert meta["engine"].value == engine
        stored[engine] = lake.read_table(WINDOW_FEATURES_KEY.path, str(DAY))
    pandas_table, spark_table = stored["pandas"], stored["spark"]
    assert spark_table.num_rows == pandas_table.num_rows == 1200
    assert spark_table.schema.equals(pandas_table.schema)
    assert spark_table.column("event_id").equals(pandas_table.column("event_id"))
    for name in FEATURE_NAMES:
        np.testing.assert_allclose(
            spark_table.column(name).to_numpy(), pandas_table.column(name).to_numpy(), rtol=0, atol=1e-6, err_msg=name
        )


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(
    runs=st.lists(st.lists(st.text(alphabet="ab-9é", max_size=4), max_size=12), max_size=6),
    batch_rows=st.integers(min_value=1, max_value=5),
)
def test_merging_sorted_runs_gives_the_sorted_whole(runs, batch_rows):
    """Whatever the runs (empty ones, repeated keys, keys shared between runs), the merge yields every
    row once, in key order."""
    batches, numbered_runs = [], []
    for number, keys in enumerate(runs):
        table = pa.table({"k": pa.array(sorted(keys), pa.string()), "run": pa.array([number] * len(keys))})
        run_batches = table.to_batches(batch_rows)
        numbered_runs.append(list(range(len(batches), len(batches) + len(run_batches))))
        batches.extend(run_batches)

    merged = list(merge_sorted_runs(batches.__getitem__, numbered_runs, "k"))

    keys = [key for table in merged for key in table.column("k").to_pylist()]
    assert keys == sorted(key for run in runs for key in run)
    assert sorted(run for table in merged for run in table.column("run").to_pylist()) == sorted(
        number for number, run in enumerate(runs) for _ in run
    )


def test_the_streamed_engine_equals_the_engine_on_the_whole_table(tmp_path):
    """Row groups in, sorted runs spilled and merged: the same table as features of the whole partition."""
    table = pa.concat_tables(
        [telemetry_table(70, DAY, seed=seed, prefix=f"p{seed % 3}") for seed in (5, 1, 4, 2)]
    ).append_column("source_file", pa.array(["f"] * 280))
    row_groups = [table.slice(start, 50) for start in range(0, table.num_rows, 50)]

    streamed = pa.concat_tables(stream_features_pandas(row_groups, str(tmp_path)))

    assert streamed.equals(compute_features_pandas(table))
