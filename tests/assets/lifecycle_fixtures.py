"""A small simulated fleet taken through the telemetry lineage once, for the model-lifecycle tests."""

import datetime as dt
import shutil
import sys
from pathlib import Path

import dagster as dg

from assets.features import WINDOW_FEATURES_KEY, window_features
from assets.ingestion import raw_telemetry
from assets.model_lifecycle import build_model_lifecycle
from assets.model_spec import ModelSpec
from assets.validation import validated_telemetry
from fleet_sim.telemetry import simulate_telemetry
from pipelines.environment import LOCAL_RAY_INIT_OPTIONS
from resources.artifact_store import ArtifactStoreResource
from resources.json_refs import JsonRefIOManager
from resources.lake import LakeResource
from resources.landing_zone import LandingZoneResource
from resources.model_registry import ModelRegistryResource
from resources.ray_cluster import LocalRayOnDemand
from resources.signing_keys import SigningKeyResource
from resources.spark import SparkResource, local_spark_config

START = dt.date(2026, 11, 1)
DAYS = 5
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
SMALL_SWEEP = {"learning_rates": [0.1], "max_leaf_nodes": [15], "l2_regularization": [0.0], "max_iter": 60}


def home_resources(home: Path) -> dict:
    return {
        "lake": LakeResource(uri=str(home / "lake")),
        "landing_zone": LandingZoneResource(landing_root=str(home / "landing"), quarantine_root=str(home / "quarantine")),
        "pyspark": SparkResource(spark_config=local_spark_config(sys.executable)),
        "ray_cluster": LocalRayOnDemand(ray_init_options=LOCAL_RAY_INIT_OPTIONS),
        "registry": ModelRegistryResource(uri=str(home / "registry")),
        "artifacts": ArtifactStoreResource(uri=str(home / "artifacts")),
        "signing_key": SigningKeyResource(dev_key_dir=str(home / "keys")),
        "ref_io_manager": JsonRefIOManager(uri=str(home / "refs")),
    }


def build_telemetry_home(home: Path, devices: int = 40, seed: int = 3) -> Path:
    """Simulate DAYS days and materialize raw -> validated -> features for each."""
    simulate_telemetry(home / "landing", START, DAYS, devices, seed, events_per_device_day=40)
    resources = home_resources(home)
    instance = dg.DagsterInstance.ephemeral()
    for offset in range(DAYS):
        result = dg.materialize(
            [raw_telemetry, validated_telemetry, window_features],
            partition_key=str(START + dt.timedelta(days=offset)),
            resources=resources,
            instance=instance,
            run_config=QUIET,
        )
        assert result.success
    return home


def copy_home(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, dirs_exist_ok=True)
    return target


def lifecycle_run_config(sweep: dict | None = None, **ops_config: dict) -> dict:
    ops = {"harsh_event__candidate_model": {"config": {**SMALL_SWEEP, **(sweep or {})}}}
    ops.update({f"harsh_event__{name}": {"config": config} for name, config in ops_config.items()})
    return {**QUIET, "ops": ops}


def run_lifecycle(home: Path, spec: ModelSpec, instance: dg.DagsterInstance, run_config: dict) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        build_model_lifecycle(spec, WINDOW_FEATURES_KEY),
        resources=home_resources(home),
        instance=instance,
        run_config=run_config,
        raise_on_error=False,
    )


def checks_of(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}
