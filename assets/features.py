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

    `engine: pandas` runs in-process; `engine: spark` runs the same functions in Spark workers that
    read the partition straight from the lake.
    """
    from assets.feature_engines import compute_features_pandas, compute_features_spark
    from edge_packaging.features import FEATURE_NAMES

    partition_key = context.partition_key
    started = time.perf_counter()
    if config.engine == "spark":
        features = compute_features_spark(pyspark.spark_session, lake.table_uri(VALIDATED_KEY.path, partition_key))
    else:
        features = compute_features_pandas(lake.read_table(VALIDATED_KEY.path, partition_key))
    elapsed_s = time.perf_counter() - started
    stored = lake.write_table(WINDOW_FEATURES_KEY.path, partition_key, features)
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
