"""Re-materializing an asset with unchanged inputs writes the same bytes (sha256) as before.

Telemetry, features, feedback features and the training dataset are rerun through their assets and
compared file by file. The bundle is rebuilt by `edge_bundle` from fixed parent references (a small
exported classifier), and shown to change only when an input does, or when someone writes a clock
into the manifest. An evaluation rerun after its candidate's promotion still compares it with the
champion it replaced. The slow test reruns the whole lifecycle, training included, and finds the
registry, the artifact store, the lake and every reference unchanged.
"""

import datetime as dt
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feedback_uploads import feedback_table
from lifecycle_fixtures import (
    QUIET,
    build_telemetry_home,
    lifecycle_run_config,
    run_lifecycle,
)
from platform_resources import home_resources, store_resources
from telemetry_factory import telemetry_table

from assets.bundle_release import LATENCY_FIGURE, next_build_version, with_recorded_latency
from assets.evaluation import CHAMPION_ALIAS, challenged_champion
from assets.feature_engines import compute_features_pandas
from assets.features import WINDOW_FEATURES_KEY, window_features
from assets.feedback import EDGE_FEEDBACK_KEY, build_feedback_features_asset, edge_feedback
from assets.ingestion import raw_telemetry
from assets.model_lifecycle import build_model_lifecycle
from assets.partitions import feedback_batches
from assets.validation import VALIDATED_KEY, validated_telemetry
from edge_packaging.bundle import verify_bundle
from edge_packaging.manifest import Manifest
from edge_packaging.signing import load_public_key_file
from pipelines.model_specs import HARSH_EVENT_MODEL
from resources.artifact_store import ArtifactStoreResource
from resources.lake import LakeResource
from resources.model_registry import ModelRegistry, ModelRegistryResource, RegistrationMetadataIgnored

SPEC = HARSH_EVENT_MODEL
DAY = dt.date(2026, 11, 2)
BATCH = "fb-vg-r3-20261108-abcdef012345"
REGISTERED_AT = dt.datetime(2026, 11, 5, 8, 30, tzinfo=dt.UTC)
BUNDLE_KEY = dg.AssetKey([SPEC.name, "edge_bundle"])
ROLLOUT_KEY = dg.AssetKey([SPEC.name, "rollout_plan"])
MEASURED_REF_FIELDS = ("latency_p50_ms", "latency_p99_ms")
"""What `edge_bundle`'s reference reports of this run's latency measurement: the one part of any
output allowed to differ between reruns (the bundle records the measurement of its first build)."""


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` (temp files excluded), by relative path."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    }


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


# ---------------------------------------------------------------- telemetry, features, feedback


def test_telemetry_and_feature_partitions_are_byte_identical_on_rerun(tmp_path):
    resources = store_resources(str(tmp_path))
    landing = tmp_path / "landing" / "telemetry" / f"date={DAY}"
    landing.mkdir(parents=True)
    for seed, prefix in ((1, "a"), (2, "b")):
        (landing / f"{prefix}.parquet").write_bytes(
            parquet_bytes(telemetry_table(40, DAY, seed=seed, prefix=prefix))
        )
    instance = dg.DagsterInstance.ephemeral()

    def materialize() -> dict[str, str]:
        result = dg.materialize(
            [raw_telemetry, validated_telemetry, window_features],
            partition_key=str(DAY),
            resources=resources,
            instance=instance,
            run_config=QUIET,
        )
        assert result.success
        return file_hashes(tmp_path / "lake")

    first = materialize()
    assert {
        f"{'/'.join(key.path)}/{DAY}.parquet"
        for key in (raw_telemetry.key, VALIDATED_KEY, WINDOW_FEATURES_KEY)
    } <= set(first)
    assert materialize() == first


def test_feedback_and_its_features_are_byte_identical_on_rerun(tmp_path):
    resources = store_resources(str(tmp_path))
    upload = tmp_path / "landing" / "edge_feedback" / "date=2026-11-08" / f"{BATCH}.parquet"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(parquet_bytes(feedback_table(rows=30, seed=4)))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(feedback_batches.name, [BATCH])
    features = build_feedback_features_asset(SPEC.name)

    def materialize() -> dict[str, str]:
        result = dg.materialize(
            [edge_feedback, features],
            partition_key=BATCH,
            resources=resources,
            instance=instance,
            run_config=QUIET,
        )
        assert result.success
        return file_hashes(tmp_path / "lake")

    first = materialize()
    assert f"{SPEC.name}/feedback_features/{BATCH}.parquet" in first
    assert materialize() == first


def test_the_training_dataset_is_byte_identical_on_rerun(tmp_path):
    lake = LakeResource(uri=str(tmp_path / "lake"))
    for offset in range(3):  # the split holds out the last two days: it needs three
        day = DAY + dt.timedelta(days=offset)
        validated = telemetry_table(60, day, seed=offset)
        lake.write_table(VALIDATED_KEY.path, str(day), validated)
        lake.write_table(WINDOW_FEATURES_KEY.path, str(day), compute_features_pandas(validated))
    lake.write_table(EDGE_FEEDBACK_KEY.path, BATCH, feedback_table(rows=5, seed=1))
    instance = dg.DagsterInstance.ephemeral()

    def materialize() -> dict[str, str]:
        result = dg.materialize(
            build_model_lifecycle(SPEC, WINDOW_FEATURES_KEY),
            selection=[dg.AssetKey([SPEC.name, "training_dataset"])],
            resources=home_resources(tmp_path),
            instance=instance,
            run_config=QUIET,
        )
        assert result.success
        return file_hashes(tmp_path / "lake") | file_hashes(tmp_path / "refs")

    first = materialize()
    assert f"{SPEC.name}/training_dataset/__all__.parquet" in first
    assert materialize() == first


# ---------------------------------------------------------------- the bundle


def tiny_champion_onnx() -> bytes:
    """A real edge model (feature graph + converted trees) from a classifier fitted on noise in a
    fraction of a second: the bundle asset measures, checks and signs it like any champion."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from edge_packaging.export import export_edge_model
    from edge_packaging.features import FEATURE_NAMES

    rng = np.random.default_rng(0)
    labels = np.arange(200) % len(SPEC.class_names)
    classifier = HistGradientBoostingClassifier(max_iter=3, max_leaf_nodes=4, random_state=0)
    classifier.fit(rng.normal(size=(200, len(FEATURE_NAMES))).astype(np.float32), labels)
    return export_edge_model(classifier, SPEC.class_names).SerializeToString()


def write_ref(home: Path, name: str, ref: dict) -> None:
    path = home / "refs" / SPEC.name / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ref))


@pytest.fixture
def bundle_home(tmp_path) -> Path:
    """The parents of `edge_bundle` as their references: a registered champion, its edge model in the
    artifact store, an evaluation and a training dataset (devices by hardware revision)."""
    home = tmp_path / "home"
    registry = ModelRegistry(str(home / "registry"), clock=lambda: REGISTERED_AT)
    version = registry.register(
        SPEC.name, {"model.skops": b"stands in for the classifier"}, {"run_id": "run-that-trained"}
    )
    edge_model = ArtifactStoreResource(uri=str(home / "artifacts")).put(
        "edge_models", f"{SPEC.name}.onnx", tiny_champion_onnx()
    )
    dataset = home / "lake" / SPEC.name / "training_dataset" / "__all__.parquet"
    dataset.parent.mkdir(parents=True)
    devices = [f"dev-{i:03d}" for i in range(40)]
    pq.write_table(pa.table({"device_id": devices, "hardware_rev": ["vg-r3", "vg-r4"] * 20}), dataset)
    write_ref(home, "edge_model", {"uri": edge_model.uri, "sha256": edge_model.sha256})
    write_ref(
        home,
        "champion_model",
        {
            "version_id": version.version_id,
            "sequence": version.sequence,
            "previous_version_id": None,
            "thresholds": {"harsh_brake": 0.5, "harsh_accel": 0.5, "harsh_turn": 0.5, "collision": 0.4},
        },
    )
    write_ref(
        home,
        "model_evaluation",
        {
            "report_uri": str(home / "artifacts" / "evaluations" / "evaluation.json"),
            "candidate": {"metrics": {"macro_f1": 0.91}},
            "gates": {"passed": True},
        },
    )
    write_ref(
        home,
        "training_dataset",
        {
            "uri": str(dataset),
            "partitions": ["2026-11-01", "2026-11-02"],
            "test_partitions": ["2026-11-02"],
        },
    )
    return home


def build_bundle_and_plan(home: Path, instance: dg.DagsterInstance) -> dict:
    """Materialize `edge_bundle` and `rollout_plan` from the stored parent references; the bundle's
    reference, its bytes' sha256, the build it reports and the plan's bytes."""
    result = dg.materialize(
        build_model_lifecycle(SPEC, WINDOW_FEATURES_KEY),
        selection=[BUNDLE_KEY, ROLLOUT_KEY],
        resources=home_resources(home),
        instance=instance,
        run_config=QUIET,
    )
    assert result.success
    assert all(check.passed for check in result.get_asset_check_evaluations())
    ref = json.loads((home / "refs" / SPEC.name / "edge_bundle.json").read_text())
    build = next(
        e for e in result.get_asset_materialization_events() if e.asset_key == BUNDLE_KEY
    ).materialization.metadata["build"]
    return {
        "ref": ref,
        "bundle_sha256": hashlib.sha256(Path(ref["uri"]).read_bytes()).hexdigest(),
        "build": build.value,
        "rollout_plan": (home / "refs" / SPEC.name / "rollout_plan.json").read_bytes(),
    }


def manifest_of(home: Path, ref: dict) -> Manifest:
    return verify_bundle(
        ref["uri"], [load_public_key_file(home / "keys" / "dev-signing-key.pub.pem")]
    ).manifest


def without_measurement(ref: dict) -> dict:
    return {name: value for name, value in ref.items() if name not in MEASURED_REF_FIELDS}


def test_rebuilding_the_bundle_with_unchanged_inputs_gives_the_same_bytes(bundle_home):
    instance = dg.DagsterInstance.ephemeral()
    first = build_bundle_and_plan(bundle_home, instance)
    second = build_bundle_and_plan(bundle_home, instance)

    assert first["ref"]["version"] == f"{SPEC.contract_version}.1.0"
    assert second["bundle_sha256"] == first["bundle_sha256"] == first["ref"]["sha256"]
    assert (
        second["build"] == f"reproduces {first['ref']['version']} byte for byte (its recorded latency kept)"
    )
    assert without_measurement(second["ref"]) == without_measurement(first["ref"])
    assert second["rollout_plan"] == first["rollout_plan"]
    assert len(list((bundle_home / "artifacts" / "bundles").rglob("*.tar"))) == 1

    manifest = manifest_of(bundle_home, first["ref"])
    assert manifest.created_at == "2026-11-05T08:30:00Z"  # the model's registration, not the build's clock
    assert manifest.lineage["training_run_id"] == "run-that-trained"
    assert "dagster_run_id" not in manifest.lineage  # the building run's id would change every rebuild
    assert all(LATENCY_FIGURE in figures for figures in manifest.device_profiles.values())


def test_a_changed_input_makes_a_new_version_and_restoring_it_brings_the_old_bundle_back(bundle_home):
    instance = dg.DagsterInstance.ephemeral()
    first = build_bundle_and_plan(bundle_home, instance)
    champion_ref = bundle_home / "refs" / SPEC.name / "champion_model.json"
    original = champion_ref.read_text()
    champion = json.loads(original)
    write_ref(
        bundle_home,
        "champion_model",
        {**champion, "thresholds": {**champion["thresholds"], "collision": 0.35}},
    )

    changed = build_bundle_and_plan(bundle_home, instance)
    assert changed["ref"]["version"] == f"{SPEC.contract_version}.1.1"
    assert changed["bundle_sha256"] != first["bundle_sha256"]
    assert changed["build"] == "a new bundle"

    champion_ref.write_text(original)
    restored = build_bundle_and_plan(bundle_home, instance)
    assert restored["ref"]["version"] == first["ref"]["version"]
    assert restored["bundle_sha256"] == first["bundle_sha256"]


def test_a_timestamp_written_into_the_manifest_would_make_every_rebuild_a_new_bundle(
    bundle_home, monkeypatch
):
    """What the identity above guards against: a manifest field read from the clock at build time."""
    from edge_packaging import bundle

    real_build_manifest = bundle.build_manifest
    clock: Iterator[dt.datetime] = (REGISTERED_AT + dt.timedelta(seconds=second) for second in range(10**6))

    def stamped_with_the_build_time(*args, **kwargs):
        return real_build_manifest(
            *args, **{**kwargs, "created_at": next(clock).strftime("%Y-%m-%dT%H:%M:%SZ")}
        )

    monkeypatch.setattr(bundle, "build_manifest", stamped_with_the_build_time)
    instance = dg.DagsterInstance.ephemeral()
    first = build_bundle_and_plan(bundle_home, instance)
    second = build_bundle_and_plan(bundle_home, instance)

    assert second["bundle_sha256"] != first["bundle_sha256"]
    assert (first["ref"]["version"], second["ref"]["version"]) == (
        f"{SPEC.contract_version}.1.0",
        f"{SPEC.contract_version}.1.1",
    )
    assert second["rollout_plan"] != first["rollout_plan"]


def test_only_the_measured_latency_is_taken_from_the_earlier_bundle():
    figures = {"model_bytes": 900, "latency_budget_ms": 5.0, LATENCY_FIGURE: 0.09}
    earlier = SimpleNamespace(device_profiles={"vg-r3-gateway": {"model_bytes": 800, LATENCY_FIGURE: 0.07}})
    fresh = {"vg-r3-gateway": figures, "vg-r4-gateway": figures}
    assert with_recorded_latency(fresh, earlier) == {
        "vg-r3-gateway": {**figures, LATENCY_FIGURE: 0.07},  # the static figures stay as built now
        "vg-r4-gateway": figures,  # a profile the earlier bundle did not pass keeps today's measurement
    }
    assert next_build_version("1.4", []) == "1.4.0"
    assert next_build_version("1.4", ["1.4.0", "1.4.2", "1.3.7", "1.40.9"]) == "1.4.3"


# ---------------------------------------------------------------- the evaluation


def test_a_candidate_that_is_already_champion_is_evaluated_against_the_champion_it_replaced(tmp_path):
    registry = ModelRegistryResource(uri=str(tmp_path / "registry"))
    first, second, third = (
        registry.register(SPEC.name, {"model.skops": name.encode()}, {}).version_id
        for name in ("w", "x", "y")
    )
    assert challenged_champion(registry, SPEC.name, first) is None  # no champion yet
    registry.set_alias(SPEC.name, CHAMPION_ALIAS, first, actor="test", reason="first")
    assert challenged_champion(registry, SPEC.name, first) is None  # the first champion replaced nothing
    assert challenged_champion(registry, SPEC.name, second).version_id == first
    registry.set_alias(SPEC.name, CHAMPION_ALIAS, second, actor="test", reason="promoted")
    # Rerunning the evaluation of `second` after its promotion compares it with `first` again.
    assert challenged_champion(registry, SPEC.name, second).version_id == first
    assert challenged_champion(registry, SPEC.name, third).version_id == second


# ---------------------------------------------------------------- the whole lifecycle


@pytest.mark.slow
def test_rerunning_the_whole_lifecycle_with_unchanged_inputs_reproduces_every_output(tmp_path_factory):
    home = build_telemetry_home(tmp_path_factory.mktemp("home"))
    instance = dg.DagsterInstance.ephemeral()
    assert run_lifecycle(home, SPEC, instance, lifecycle_run_config()).success
    replaced = ModelRegistry(str(home / "registry")).alias(SPEC.name, CHAMPION_ALIAS).version_id
    retraining = lifecycle_run_config({"learning_rates": [0.2], "max_iter": 80})
    assert run_lifecycle(home, SPEC, instance, retraining).success  # a new champion, gated against the first
    bundle_ref = home / "refs" / SPEC.name / "edge_bundle.json"
    before = {part: file_hashes(home / part) for part in ("lake", "registry", "artifacts", "refs")}
    first_bundle = json.loads(bundle_ref.read_text())

    with pytest.warns(RegistrationMetadataIgnored):  # the same skops bytes: the first registration stands
        rerun = run_lifecycle(home, SPEC, instance, retraining)
    assert rerun.success
    after = {part: file_hashes(home / part) for part in ("lake", "registry", "artifacts", "refs")}
    second_bundle = json.loads(bundle_ref.read_text())

    # The dataset, the registry (skops bytes, version records, history), the evaluation (still against
    # the champion the model replaced), the ONNX model and the bundle: nothing new, nothing changed.
    for part in ("lake", "registry", "artifacts"):
        assert after[part] == before[part], part
    changed_refs = {name for name in after["refs"] if after["refs"][name] != before["refs"][name]}
    assert changed_refs <= {f"{SPEC.name}/edge_bundle.json"}
    assert without_measurement(second_bundle) == without_measurement(first_bundle)
    assert second_bundle["version"] == f"{SPEC.contract_version}.2.0"
    evaluation = json.loads((home / "refs" / SPEC.name / "model_evaluation.json").read_text())
    assert evaluation["champion_version"] == replaced
