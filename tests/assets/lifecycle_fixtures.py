"""A small simulated fleet taken through the telemetry lineage once, for the model-lifecycle tests."""

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
from platform_resources import home_resources

from assets.features import WINDOW_FEATURES_KEY, window_features
from assets.ingestion import raw_telemetry
from assets.model_lifecycle import build_model_lifecycle
from assets.model_spec import ModelSpec
from assets.validation import validated_telemetry
from fleet_sim.telemetry import simulate_telemetry

START = dt.date(2026, 11, 1)
DAYS = 5
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
SMALL_SWEEP = {"learning_rates": [0.1], "max_leaf_nodes": [15], "l2_regularization": [0.0], "max_iter": 60}


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
