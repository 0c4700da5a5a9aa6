"""`harsh_event/window_features`: the harsh-event model's features of each validated window."""

import time
from typing import Literal

import dagster as dg

from assets.partitions import daily_telemetry_partitions
from assets.step_resources import K8S_SPARK_STEP
from assets.validation import VALIDATED_KEY
from resources.lake import LakeResource
from resources.spark import SparkResource

WINDOW_FEATURES_KEY = dg.AssetKey(["harsh_event", "window_features"])


class FeatureEngineConfig(dg.Config):
    """Which engine computes the features; both run the same numpy functions."""

    engine: Literal["pandas", "spark"] = "pandas"


@dg.asset(
    key=WINDOW_FEATURES_KEY,
    deps=[VALIDATED_KEY],
    partitions_def=daily_telemetry_partitions,
    group_name="harsh_event",
    kinds={"parquet", "numpy", "spark"},
    code_version="1",
    automation_condition=(
        dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label("eager once validation gates pass"),
    op_tags=K8S_SPARK_STEP,
)
def window_features(
    context: dg.AssetExecutionContext,
    config: FeatureEngineConfig,
    lake: LakeResource,
    pyspark: SparkResource,
) -> dg.MaterializeResult:
    """Per-window features of the harsh-event model (peaks, means and spreads per axis, jerk,
    magnitude energy, time above thresholds, yaw-rate peak, speed change, high-band energy), computed
    by `edge_packaging.features`, the same definition the edge model carries in its ONNX graph.

    `engine: pandas` runs in-process on the partition streamed a row group at a time (the output,
    sorted by event_id, goes through an external merge sort on local disk), so memory holds a row
    group, not the day; `engine: spark` runs the same functions in Spark workers that read the
    partition's row groups straight from the lake, and collects the features on the driver.
    """
    import tempfile

    from assets.feature_engines import (
        FEATURE_INPUT_COLUMNS,
        compute_features_spark,
        feature_schema,
        stream_features_pandas,
    )
    from edge_packaging.features import FEATURE_NAMES

    partition_key = context.partition_key
    started = time.perf_counter()
    with lake.partition_writer(WINDOW_FEATURES_KEY.path, partition_key, feature_schema()) as features:
        if config.engine == "spark":
            validated_uri = lake.table_uri(VALIDATED_KEY.path, partition_key)
            features.write(compute_features_spark(pyspark.spark_session, validated_uri))
        else:
            with (
                lake.open_partition(VALIDATED_KEY.path, partition_key) as validated,
                tempfile.TemporaryDirectory(prefix="fleetml-features-") as spill_dir,
            ):
                for table in stream_features_pandas(validated.row_groups(FEATURE_INPUT_COLUMNS), spill_dir):
                    features.write(table)
    elapsed_s = time.perf_counter() - started
    stored = features.stored
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": stored.rows,
            "uri": dg.MetadataValue.path(stored.uri),
            "engine": config.engine,
            "feature_count": len(FEATURE_NAMES),
            "features": dg.MetadataValue.json(list(FEATURE_NAMES)),
            "compute_seconds": round(elapsed_s, 3),
            "windows_per_second": round(stored.rows / elapsed_s) if elapsed_s > 0 else None,
        }
    )
