"""The parity gate as the code location wires it: `harsh_event/edge_model` exports the champion,
compares the ONNX graph with the Python pipeline on the held-out days' windows, and its blocking check
stops the lineage when they disagree. The parity maths is tested in `tests/edge_packaging`; this holds
the asset definition built from the harsh-event spec to it, with a small classifier (no Ray, no
training job): a few seconds."""

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest

from assets.edge import PARITY_CHECK
from assets.validation import VALIDATED_KEY
from pipelines.model_specs import HARSH_EVENT_MODEL as SPEC

HELD_OUT_DAY = "2026-11-05"
SHORT_DAY = "2026-11-06"
"""A held-out day with fewer windows than parity needs to be established (1000)."""


def _simulated_day(devices: int, day: dt.date, seed: int = 5) -> tuple[pa.Table, np.ndarray]:
    """One day of the simulated fleet's validated telemetry, and the true class of each window."""
    from fleet_sim.fleet import build_fleet
    from fleet_sim.telemetry import device_day_rng, simulate_device_day

    uploads = [
        simulate_device_day(device, day, device_day_rng(seed, device, day))
        for device in build_fleet(devices, seed)
    ]
    return pa.concat_tables(upload.table for upload in uploads), np.concatenate(
        [upload.true_class for upload in uploads]
    )


@pytest.fixture(scope="module")
def champion_home(tmp_path_factory) -> Path:
    """A lake holding two held-out days, a registry whose champion is a small tree classifier trained
    on another day's features, and the references `edge_model` reads from its parents."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    from edge_packaging.features import compute_window_features
    from edge_packaging.telemetry_contract import imu_windows
    from resources.lake import LakeResource
    from resources.model_registry import ModelRegistry
    from resources.skops_models import dump_classifier

    home = tmp_path_factory.mktemp("parity_home")
    training, true_class = _simulated_day(30, dt.date(2026, 11, 1))
    features = compute_window_features(
        imu_windows(training.column("imu")), training.column("speed_kph").to_numpy()
    )
    labels = np.array([SPEC.class_names.index(name) for name in true_class])
    with threadpool_limits(1):  # OpenMP threads on a busy 2-core machine cost far more than they give
        classifier = HistGradientBoostingClassifier(max_iter=15, random_state=0).fit(features, labels)
    registry = ModelRegistry(str(home / "registry"))
    version = registry.register(
        SPEC.name, {"model.skops": dump_classifier(classifier)}, {"purpose": "parity test"}
    )

    lake = LakeResource(uri=str(home / "lake"))
    held_out, _ = _simulated_day(30, dt.date.fromisoformat(HELD_OUT_DAY))
    assert held_out.num_rows >= 1000
    lake.write_table(VALIDATED_KEY.path, HELD_OUT_DAY, held_out)
    short, _ = _simulated_day(10, dt.date.fromisoformat(SHORT_DAY))
    assert short.num_rows < 1000
    lake.write_table(VALIDATED_KEY.path, SHORT_DAY, short)

    refs = home / "refs" / SPEC.name
    refs.mkdir(parents=True)
    thresholds = {name: 0.5 for name in SPEC.class_names if name != SPEC.fallback_class}
    champion = {"version_id": version.version_id, "sequence": version.sequence, "thresholds": thresholds}
    (refs / "champion_model.json").write_text(json.dumps(champion))
    return home


def export_edge_model(home: Path, test_partitions: list[str]) -> dg.ExecuteInProcessResult:
    """Materialize the code location's `edge_model` (and its parity check) from the references in
    `home`, with `test_partitions` as the training dataset's held-out days."""
    from threadpoolctl import threadpool_limits

    from assets.features import WINDOW_FEATURES_KEY
    from assets.model_lifecycle import build_model_lifecycle
    from resources.artifact_store import ArtifactStoreResource
    from resources.json_refs import JsonRefIOManager
    from resources.lake import LakeResource
    from resources.model_registry import ModelRegistryResource

    (home / "refs" / SPEC.name / "training_dataset.json").write_text(
        json.dumps({"test_partitions": test_partitions})
    )
    edge_model = next(
        assets_def
        for assets_def in build_model_lifecycle(SPEC, WINDOW_FEATURES_KEY)
        if assets_def.key == dg.AssetKey([SPEC.name, "edge_model"])
    )
    parents = [
        dg.AssetSpec([SPEC.name, name]).with_io_manager_key("ref_io_manager")
        for name in ("champion_model", "training_dataset")
    ]
    with threadpool_limits(1):
        return dg.materialize(
            [edge_model, *parents],
            selection=[edge_model.key],
            resources={
                "lake": LakeResource(uri=str(home / "lake")),
                "registry": ModelRegistryResource(uri=str(home / "registry")),
                "artifacts": ArtifactStoreResource(uri=str(home / "artifacts")),
                "ref_io_manager": JsonRefIOManager(uri=str(home / "refs")),
            },
            run_config={
                "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
                "ops": {f"{SPEC.name}__edge_model": {"config": {"parity_windows": 1000}}},
            },
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )


def parity_gate(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == PARITY_CHECK]
    return evaluation


def test_the_exported_model_passes_parity_on_the_held_out_days(champion_home):
    result = export_edge_model(champion_home, [HELD_OUT_DAY])

    gate = parity_gate(result)
    assert result.success and gate.passed
    assert gate.metadata["windows"].value == 1000
    assert gate.metadata["max_abs_diff"].value < 1e-4 and gate.metadata["argmax_agreement"].value >= 0.999


def test_a_feature_skew_fails_the_blocking_parity_check(champion_home, monkeypatch):
    from edge_packaging import export, features

    honest = features.compute_window_features

    def skewed(imu, speed_kph):  # the Python pipeline reads speed in m/s: the classic unit skew
        return honest(imu, speed_kph / 3.6)

    monkeypatch.setattr(features, "compute_window_features", skewed)
    monkeypatch.setattr(export, "compute_window_features", skewed, raising=False)
    result = export_edge_model(champion_home, [HELD_OUT_DAY])

    gate = parity_gate(result)
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.ERROR
    assert gate.metadata["max_abs_diff"].value > 1e-4
    assert not result.success  # blocking: the edge model's step fails, so nothing below it runs


def test_too_few_held_out_windows_do_not_establish_parity(champion_home):
    result = export_edge_model(champion_home, [SHORT_DAY])

    gate = parity_gate(result)
    assert gate.metadata["windows"].value < 1000
    assert not gate.passed and "parity not established" in gate.description
    assert not result.success


def test_the_parity_check_on_the_edge_model_is_blocking():
    from assets.features import WINDOW_FEATURES_KEY
    from assets.model_lifecycle import build_model_lifecycle

    edge_model = next(
        a
        for a in build_model_lifecycle(SPEC, WINDOW_FEATURES_KEY)
        if a.key == dg.AssetKey([SPEC.name, "edge_model"])
    )
    (spec,) = [check for check in edge_model.check_specs if check.name == PARITY_CHECK]
    assert spec.blocking
