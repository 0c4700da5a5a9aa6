"""The Spark feature engine on a standalone cluster: executors read validated telemetry from S3 with
pyarrow and compute the same features as the pandas engine."""

import datetime as dt
import sys

import dagster as dg
import numpy as np
import pyarrow.parquet as pq
import pytest
from telemetry_factory import telemetry_table

from assets.feature_engines import compute_features_pandas, compute_features_spark, row_group_tasks
from edge_packaging.features import FEATURE_NAMES
from resources.filesystems import filesystem_and_path
from resources.spark import SparkResource, cluster_spark_config
from stack.local_stack import LocalStack

pytestmark = [pytest.mark.stack, pytest.mark.slow]  # real servers take seconds to start
DAY = dt.date(2026, 11, 3)


@pytest.fixture
def cluster_session(local_stack: LocalStack, stack_environment: dict[str, str]):
    """A Spark session on the stack's master (a session left by another test would be reused by
    `getOrCreate`, whatever its master: stop it first)."""
    from pyspark.sql import SparkSession

    if (active := SparkSession.getActiveSession()) is not None:
        active.stop()
    config = cluster_spark_config(local_stack.spark.master_url, sys.executable, driver_host="127.0.0.1")
    with dg.build_resources(
        {"pyspark": SparkResource(spark_config={**config, "spark.ui.enabled": "false"})}
    ) as resources:
        session = resources.pyspark.spark_session
        try:
            yield session
        finally:
            session.stop()


def test_spark_engine_on_the_cluster_reads_s3_and_matches_pandas(cluster_session, stack_environment):
    validated = telemetry_table(900, DAY, seed=31)
    uri = f"s3://fleetml/test-lake/validated_telemetry/{DAY}.parquet"
    fs, path = filesystem_and_path(uri)
    pq.write_table(validated, path, filesystem=fs, row_group_size=300)  # three row groups: three tasks

    assert cluster_session.sparkContext.master == stack_environment["FLEETML_SPARK_MASTER"]
    assert row_group_tasks(uri) == [(uri, 0), (uri, 1), (uri, 2)]
    spark_table = compute_features_spark(cluster_session, uri)
    pandas_table = compute_features_pandas(validated)

    assert spark_table.num_rows == pandas_table.num_rows == 900
    assert spark_table.schema.equals(pandas_table.schema)
    assert spark_table.column("event_id").equals(pandas_table.column("event_id"))
    for name in FEATURE_NAMES:
        np.testing.assert_allclose(
            spark_table.column(name).to_numpy(),
            pandas_table.column(name).to_numpy(),
            rtol=0,
            atol=1e-6,
            err_msg=name,
        )
