"""From validated telemetry to a signed bundle, and every gate failing for its own reason."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from lifecycle_fixtures import (
    build_telemetry_home,
    checks_of,
    copy_home,
    lifecycle_run_config,
    materialized,
    run_lifecycle,
)
from platform_resources import home_resources

from assets.edge import PARITY_CHECK, PROFILES_CHECK, SIGNATURE_CHECK
from assets.evaluation import ABSOLUTE_GATE, SLICE_GATE
from assets.features import WINDOW_FEATURES_KEY
from assets.model_lifecycle import build_model_lifecycle
from edge_packaging.bundle import verify_bundle
from edge_packaging.signing import load_public_key_file
from pipelines.model_specs import HARSH_EVENT_MODEL
from resources.model_registry import ModelRegistry

pytestmark = pytest.mark.slow
SPEC = HARSH_EVENT_MODEL
WEAK_SWEEP = {"learning_rates": [0.01], "max_leaf_nodes": [2], "max_iter": 2}
ALL_ASSETS = {f"harsh_event/{name}" for name in (
    "training_dataset", "candidate_model", "model_evaluation", "champion_model", "edge_model", "edge_bundle", "rollout_plan"
)}


@pytest.fixture(scope="module")
def telemetry_home(tmp_path_factory) -> Path:
    return build_telemetry_home(tmp_path_factory.mktemp("telemetry_home"))


@pytest.fixture(scope="module")
def champion_home(telemetry_home, tmp_path_factory):
    """A home where the first lifecycle run promoted a champion and built its bundle."""
    home = copy_home(telemetry_home, tmp_path_factory.mktemp("champion_home"))
    instance = dg.DagsterInstance.ephemeral()
    result = run_lifecycle(home, SPEC, instance, lifecycle_run_config())
    return home, instance, result


def champion_version(home: Path) -> str | None:
    version = ModelRegistry(str(home / "registry")).alias(SPEC.name, "champion")
    return version.version_id if version else None


def ref(home: Path, name: str) -> dict:
    return json.loads((home / "refs" / "harsh_event" / f"{name}.json").read_text())


def test_end_to_end_from_telemetry_to_a_verified_signed_bundle(champion_home):
    home, _, result = champion_home
    assert result.success
    assert materialized(result) == ALL_ASSETS
    assert all(evaluation.passed for evaluation in result.get_asset_check_evaluations())
    candidate, bundle = ref(home, "candidate_model"), ref(home, "edge_bundle")
    assert champion_version(home) == candidate["version_id"]
    assert bundle["version"] == f"{SPEC.contract_version}.1.0"

    verified = subprocess.run(
        [sys.executable, "-m", "edge_packaging", "verify", bundle["uri"], "--public-key", str(home / "keys" / "dev-signing-key.pub.pem")],
        capture_output=True, text=True,
    )
    assert verified.returncode == 0, verified.stderr
    inspected = subprocess.run([sys.executable, "-m", "edge_packaging", "inspect", bundle["uri"], "--json"], capture_output=True, text=True)
    manifest = json.loads(inspected.stdout)
    lineage = manifest["lineage"]
    assert lineage["partitions"] == ref(home, "training_dataset")["partitions"]
    assert lineage["model_version_id"] == candidate["version_id"]
    assert lineage["training_run_id"] == result.run_id  # the run that trained the model (here, the same run)
    assert lineage["signing_key"].startswith("dev:")
    assert set(manifest["device_profiles"]) == set(SPEC.device_profiles)
    assert manifest["decision_thresholds"]["benign"] == 0.0
    assert all(manifest["decision_thresholds"][name] >= SPEC.min_decision_threshold for name in SPEC.class_names if name != "benign")

    plan = ref(home, "rollout_plan")
    canary = [stage for stage in plan["stages"] if stage["name"] == "canary"]
    assert {stage["hardware_rev"] for stage in canary} == {"vg-r3", "vg-r4"}
    assert all(len(stage["devices"]) >= 1 for stage in canary)
    assert plan["rollback_bundle"] is None  # the first bundle has nothing to roll back to


def test_a_weak_candidate_fails_the_floors_and_is_never_promoted(champion_home, tmp_path):
    home = copy_home(champion_home[0], tmp_path / "home")
    before = champion_version(home)
    result = run_lifecycle(home, SPEC, champion_home[1], lifecycle_run_config(WEAK_SWEEP))
    gate = checks_of(result)[ABSOLUTE_GATE]
    assert not gate.passed
    failures = gate.metadata["failures"].value
    assert any(f["figure"] == "macro_f1" and f["shortfall"] > 0 for f in failures)
    assert "below the floor" in gate.description
    assert "harsh_event/champion_model" not in materialized(result)
    assert "harsh_event/edge_bundle" not in materialized(result)
    assert champion_version(home) == before


def test_a_slice_regression_against_the_champion_blocks_promotion(champion_home, tmp_path):
    home = copy_home(champion_home[0], tmp_path / "home")
    lenient_floors = dataclasses.replace(SPEC.gates, min_macro_f1=0.0, min_recall={})
    spec = dataclasses.replace(SPEC, gates=lenient_floors)
    result = run_lifecycle(home, spec, champion_home[1], lifecycle_run_config(WEAK_SWEEP))
    checks = checks_of(result)
    assert checks[ABSOLUTE_GATE].passed
    gate = checks[SLICE_GATE]
    assert not gate.passed
    assert "vs champion" in gate.description and "beyond the 0.05 tolerance" in gate.description
    assert {f["gate"] for f in gate.metadata["failures"].value} == {"slice_regression"}
    assert "harsh_event/champion_model" not in materialized(result)


def test_a_feature_skew_breaks_parity_and_blocks_the_bundle(champion_home, tmp_path, monkeypatch):
    import edge_packaging.features as features

    home = copy_home(champion_home[0], tmp_path / "home")
    honest = features.compute_window_features

    def skewed(imu, speed_kph):  # the Python pipeline reads speed in m/s: the classic unit skew
        return honest(imu, speed_kph / 3.6)

    monkeypatch.setattr(features, "compute_window_features", skewed)
    monkeypatch.setattr("edge_packaging.export.compute_window_features", skewed, raising=False)
    result = run_lifecycle(home, SPEC, champion_home[1], lifecycle_run_config())
    gate = checks_of(result)[PARITY_CHECK]
    assert not gate.passed
    assert gate.metadata["max_abs_diff"].value > 1e-4
    assert "harsh_event/edge_bundle" not in materialized(result)


def test_a_device_profile_too_small_blocks_the_bundle(champion_home, tmp_path, monkeypatch):
    import edge_packaging.profiles as profiles

    home = copy_home(champion_home[0], tmp_path / "home")
    real = profiles.load_profiles()

    def with_tiny_gateway(*_args, **_kwargs):
        return {**real, "vg-r3-gateway": dataclasses.replace(real["vg-r3-gateway"], max_model_bytes=10_000)}

    monkeypatch.setattr(profiles, "load_profiles", with_tiny_gateway)
    result = run_lifecycle(home, SPEC, champion_home[1], lifecycle_run_config())
    checks = checks_of(result)
    assert not checks[PROFILES_CHECK].passed
    assert "vg-r3-gateway: model size" in checks[PROFILES_CHECK].description
    assert not checks[SIGNATURE_CHECK].passed  # the device-side check refuses it as well
    assert "harsh_event/rollout_plan" not in materialized(result)


def test_rollback_is_one_config_change_and_history_is_append_only(champion_home, tmp_path):
    home = copy_home(champion_home[0], tmp_path / "home")
    first = champion_version(home)
    instance = champion_home[1]
    retrained = run_lifecycle(home, SPEC, instance, lifecycle_run_config({"learning_rates": [0.2], "max_iter": 80}))
    assert retrained.success
    second = champion_version(home)
    assert second != first
    rollback_bundle = ref(home, "edge_bundle")["rollback_bundle"]
    rollback_manifest = verify_bundle(rollback_bundle["uri"], [load_public_key_file(home / "keys" / "dev-signing-key.pub.pem")]).manifest
    assert rollback_manifest.lineage["model_version_id"] == first  # the previous champion's bundle

    rolled_back = dg.materialize(
        build_model_lifecycle(SPEC, WINDOW_FEATURES_KEY),
        selection=[dg.AssetKey(["harsh_event", "champion_model"])],
        resources=home_resources(home),
        instance=instance,
        run_config={"ops": {"harsh_event__champion_model": {"config": {"pin_version": first[:12]}}}},
    )
    assert rolled_back.success
    assert champion_version(home) == first
    history = ModelRegistry(str(home / "registry")).history(SPEC.name, alias="champion")
    assert [event.version_id for event in history] == [first, second, first]
    assert history[-1].reason.startswith("pinned by config")
