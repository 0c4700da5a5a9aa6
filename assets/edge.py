"""`<model>/edge_model`, `<model>/edge_bundle` and `<model>/rollout_plan`: from the champion to a
signed, profile-checked bundle and the staged plan to ship it."""

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from assets.evaluation import load_registered_classifier
from assets.model_spec import ModelSpec
from assets.step_resources import K8S_SIGNING_STEP
from assets.validation import VALIDATED_KEY
from resources.artifact_store import ArtifactStoreResource
from resources.lake import LakeResource
from resources.model_registry import ModelRegistryResource
from resources.signing_keys import SigningKeyResource

if TYPE_CHECKING:
    from assets.bundle_release import EarlierBundle
    from edge_packaging.profiles import DeviceProfile, LatencyFigures

PARITY_CHECK = "parity_with_python_pipeline"
PROFILES_CHECK = "passes_device_profiles"
SIGNATURE_CHECK = "bundle_verifies"
PARITY_WINDOWS = 2000


class EdgeExportConfig(dg.Config):
    opset: int = 17
    parity_windows: int = PARITY_WINDOWS


class RolloutConfig(dg.Config):
    max_false_positive_rate: float = 0.05
    min_reviewed_events: int = 50
    min_soak_hours: int = 24


def held_out_windows(lake: LakeResource, test_partitions: list[str], limit: int):
    """Raw windows of the test days (no training row comes from them), for parity and latency."""
    import numpy as np
    import pyarrow as pa

    from edge_packaging.telemetry_contract import imu_windows

    tables = [lake.read_table(VALIDATED_KEY.path, partition, columns=["event_id", "speed_kph", "imu"]) for partition in test_partitions]
    table = pa.concat_tables(tables).sort_by("event_id").slice(0, limit)
    return imu_windows(table.column("imu")), table.column("speed_kph").to_numpy().astype(np.float32)


def _verify_stored_bundle(artifacts: ArtifactStoreResource, uri: str, trusted: dict, limits):
    from edge_packaging.bundle import verify_bundle

    if "://" not in uri:
        return verify_bundle(uri, trusted, limits)
    with tempfile.TemporaryDirectory() as directory:
        local = Path(directory, Path(uri).name)
        local.write_bytes(artifacts.get(uri))
        return verify_bundle(local, trusted, limits)


def steady_latency(
    model_bytes: bytes, targets: Sequence["DeviceProfile"], rounds: int = 3
) -> "LatencyFigures":
    """One-thread compute latency (thread CPU time, see `LatencyFigures`) of the round with the median
    p99 among `rounds` rounds, so a burst of interference on the build host cannot fail a profile.

    The model is admitted by the target profiles that accept it before any session measures it;
    `ModelRefused` when no target device would load it."""
    from edge_packaging.profiles import admit_model_for_build, measure_latency_ms

    admitted = admit_model_for_build(model_bytes, targets)
    measured = sorted((measure_latency_ms(admitted) for _ in range(rounds)), key=lambda round_: round_.p99_ms)
    return measured[len(measured) // 2]


def _earlier_bundle(
    artifacts: ArtifactStoreResource, signing_key: SigningKeyResource, model_name: str, record: dict
) -> "EarlierBundle | None":
    """The bundle an earlier materialization recorded, read back from this artifact store by its
    sha256 and verified with today's key; None when it is gone, is not those bytes, or does not verify
    (signed by a rotated key: a rebuild is then a new bundle anyway)."""
    from assets.bundle_release import EarlierBundle
    from edge_packaging.bundle import BundleLimits, bundle_file_name

    uri = artifacts.uri_of("bundles", record["sha256"], bundle_file_name(model_name, record["version"]))
    trusted = {signing_key.key_alias: signing_key.trusted_public_key(signing_key.key_alias)}
    try:
        verified = _verify_stored_bundle(artifacts, uri, trusted, BundleLimits())
    except Exception:  # noqa: BLE001 - missing, unreadable or refused: nothing to reproduce
        return None
    if verified.bundle_sha256 != record["sha256"]:
        return None
    return EarlierBundle(version=record["version"], sha256=record["sha256"], manifest=verified.manifest)


def _previous_bundles(context: dg.AssetExecutionContext, key: dg.AssetKey, limit: int = 50) -> list[dict]:
    """Metadata of earlier materializations of the bundle asset, newest first."""
    records = context.instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=limit).records
    return [
        {name: value.value for name, value in record.asset_materialization.metadata.items()}
        for record in records
        if record.asset_materialization is not None
    ]


def build_edge_assets(spec: ModelSpec) -> list[dg.AssetsDefinition]:
    edge_model_key = dg.AssetKey([spec.name, "edge_model"])
    bundle_key = dg.AssetKey([spec.name, "edge_bundle"])
    champion_in = dg.AssetIn(dg.AssetKey([spec.name, "champion_model"]))
    dataset_in = dg.AssetIn(dg.AssetKey([spec.name, "training_dataset"]))

    @dg.asset(
        key=edge_model_key,
        group_name=spec.name,
        kinds={"onnx"},
        code_version="1",
        io_manager_key="ref_io_manager",
        ins={"champion_model": champion_in, "training_dataset": dataset_in},
        check_specs=[
            dg.AssetCheckSpec(
                PARITY_CHECK,
                asset=edge_model_key,
                blocking=True,
                description="On held-out windows, the ONNX graph's probabilities stay within 1e-4 of the Python "
                "pipeline (numpy features + predict_proba) and the top class agrees on >= 99.9%.",
            )
        ],
    )
    def edge_model(
        context: dg.AssetExecutionContext,
        config: EdgeExportConfig,
        champion_model: dict,
        training_dataset: dict,
        lake: LakeResource,
        registry: ModelRegistryResource,
        artifacts: ArtifactStoreResource,
    ):
        """One ONNX graph from the raw window (imu [N, 6, 200] + speed_kph [N]) to class probabilities:
        the feature computation is ONNX operators merged in front of the converted classifier, so the
        device computes exactly what training computed. Quantized only where it shrinks the model and
        parity still holds."""
        import onnx

        from edge_packaging.export import export_edge_model, parity
        from edge_packaging.profiles import ModelRefused, admit_model, admit_model_for_build, load_profiles
        from edge_packaging.quantization import quantize_if_it_helps

        profiles = load_profiles()
        classifier = load_registered_classifier(registry, spec.name, champion_model["version_id"])
        model = export_edge_model(classifier, spec.class_names, opset=config.opset)
        imu, speed_kph = held_out_windows(lake, training_dataset["test_partitions"], config.parity_windows)
        # Parity loads the model in onnxruntime: only once the target profiles that accept it admit it.
        targets = [profiles[name] for name in spec.device_profiles]
        admitted = admit_model_for_build(model.SerializeToString(), targets)

        def int8_passes(candidate: bytes) -> bool:
            try:
                return parity(admit_model(candidate, admitted.profiles), classifier, imu, speed_kph).passed
            except ModelRefused:  # the int8 model would lose a device the float model runs on
                return False

        quantization = quantize_if_it_helps(model, int8_passes)
        report = parity(admit_model(quantization.model_bytes, admitted.profiles), classifier, imu, speed_kph)
        stored = artifacts.put("edge_models", f"{spec.name}.onnx", quantization.model_bytes)
        opsets = {entry.domain or "ai.onnx": entry.version for entry in onnx.load_from_string(quantization.model_bytes).opset_import}
        ref = {
            "uri": stored.uri,
            "sha256": stored.sha256,
            "size_bytes": stored.size_bytes,
            "model_version_id": champion_model["version_id"],
            "opsets": opsets,
            "parity": vars(report),
            "quantization": {"quantized": quantization.quantized, "reason": quantization.reason},
        }
        yield dg.Output(
            ref,
            metadata={
                "uri": dg.MetadataValue.path(stored.uri),
                "sha256": stored.sha256,
                "size_bytes": stored.size_bytes,
                "opsets": dg.MetadataValue.json(opsets),
                "parity_windows": report.windows,
                "parity_max_abs_diff": report.max_abs_diff,
                "parity_argmax_agreement": report.argmax_agreement,
                "quantized": quantization.quantized,
                "quantization": quantization.reason,
            },
        )
        yield dg.AssetCheckResult(
            check_name=PARITY_CHECK,
            passed=report.passed and report.windows >= 1000,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(
                f"{report.windows} held-out windows: max |p_onnx - p_python| = {report.max_abs_diff:.2e}, "
                f"top class agrees on {report.argmax_agreement:.2%}"
                + ("" if report.windows >= 1000 else "; fewer than 1000 windows, parity not established")
            ),
            metadata={"max_abs_diff": report.max_abs_diff, "argmax_agreement": report.argmax_agreement, "windows": report.windows},
        )

    @dg.asset(
        key=bundle_key,
        group_name=spec.name,
        kinds={"onnx"},
        code_version="1",
        io_manager_key="ref_io_manager",
        op_tags=K8S_SIGNING_STEP,
        ins={
            "edge_model": dg.AssetIn(edge_model_key),
            "champion_model": champion_in,
            "model_evaluation": dg.AssetIn(dg.AssetKey([spec.name, "model_evaluation"])),
            "training_dataset": dataset_in,
        },
        check_specs=[
            dg.AssetCheckSpec(
                PROFILES_CHECK,
                asset=bundle_key,
                blocking=True,
                description="Every target device profile accepts the model: size, opset, operators, measured "
                "one-thread latency p99 within budget.",
            ),
            dg.AssetCheckSpec(
                SIGNATURE_CHECK,
                asset=bundle_key,
                blocking=True,
                description="The stored bundle verifies as a device would: structure, signature by the key each "
                "profile trusts, manifest and file hashes, size limits.",
            ),
        ],
    )
    def edge_bundle(
        context: dg.AssetExecutionContext,
        edge_model: dict,
        champion_model: dict,
        model_evaluation: dict,
        training_dataset: dict,
        artifacts: ArtifactStoreResource,
        registry: ModelRegistryResource,
        signing_key: SigningKeyResource,
    ):
        """The signed archive devices install: `model.onnx`, `manifest.json` (name, semantic version,
        file hashes, input/output spec with units and class names, thresholds, the device profiles it
        passed, lineage back to data partitions, code versions, validation and the training run) and
        an Ed25519 signature over the manifest.

        Reproducible: the same inputs give the same bytes. The manifest's `created_at` is the model's
        registration time, and a rebuild that comes out identical to an earlier bundle of the same
        model, its recorded latency reused (see `assets.bundle_release`), is that bundle, version
        included."""
        from assets.bundle_release import release_bundle
        from edge_packaging.bundle import bundle_bytes, bundle_file_name
        from edge_packaging.decision import with_fallback
        from edge_packaging.manifest import utc_timestamp
        from edge_packaging.profiles import (
            check_bundle_against_profile,
            check_model_against_profiles,
            load_profiles,
        )

        model_bytes = artifacts.get(edge_model["uri"])
        profiles = load_profiles()
        targets = [profiles[name] for name in spec.device_profiles]
        latency = steady_latency(model_bytes, targets)
        model_checks = check_model_against_profiles(model_bytes, targets, latency=latency)
        previous = _previous_bundles(context, bundle_key)
        same_model = [m for m in previous if m.get("model_version_id") == champion_model["version_id"]]
        registered = registry.version(spec.name, champion_model["version_id"])
        private_key = signing_key.private_key()
        key_label = signing_key.label()
        if signing_key.is_dev_key:
            context.log.warning(f"signing with the local DEVELOPMENT key {key_label}: never ship this bundle to real devices")
        lineage = {
            "partitions": training_dataset["partitions"],
            "test_partitions": training_dataset["test_partitions"],
            "training_dataset": training_dataset["uri"],
            "model_version_id": champion_model["version_id"],
            "evaluation_report": model_evaluation["report_uri"],
            "evaluation": {
                "macro_f1": model_evaluation["candidate"]["metrics"]["macro_f1"],
                "gates_passed": model_evaluation["gates"]["passed"],
            },
            "validation": training_dataset.get("validation", {}),
            "edge_model_sha256": edge_model["sha256"],
            "code_versions": {key.to_user_string(): cv for key, cv in context.assets_def.code_versions_by_key.items()},
            # The run that trained the model, not this one: a rebuild must not change the bytes. The runs
            # that built a bundle are its materializations, found by its sha256.
            **({"training_run_id": run_id} if (run_id := registered.metadata.get("run_id")) else {}),
            "signing_key": key_label,
        }

        def build(version: str, device_profiles) -> bytes:
            return bundle_bytes(  # checks the model's interface against the manifest's specs first
                model_bytes,
                model_name=spec.name,
                model_version=version,
                decision_thresholds=with_fallback(champion_model["thresholds"], spec.fallback_class),
                private_key=private_key,
                device_profiles=device_profiles,
                lineage=lineage,
                created_at=utc_timestamp(registered.created_at),
            )

        records_by_version: dict[str, dict] = {}
        for record in same_model:  # newest first
            records_by_version.setdefault(record["version"], record)
        earlier = (_earlier_bundle(artifacts, signing_key, spec.name, r) for r in records_by_version.values())
        release = release_bundle(
            build,
            {name: dict(check.figures) for name, check in model_checks.items() if check.passed},
            version_prefix=f"{spec.contract_version}.{champion_model['sequence']}",
            earlier_versions=set(records_by_version),
            earlier=(bundle for bundle in earlier if bundle is not None),
        )
        version, archive = release.version, release.archive
        stored = artifacts.put("bundles", bundle_file_name(spec.name, version), archive)
        rollback = next((m for m in previous if m.get("model_version_id") == champion_model.get("previous_version_id")), None)
        verdicts, rejections = {}, []
        for profile in targets:
            trusted = {profile.trusted_key: signing_key.trusted_public_key(profile.trusted_key)}
            try:
                verified = _verify_stored_bundle(artifacts, stored.uri, trusted, profile.bundle_limits())
            except Exception as error:  # noqa: BLE001 - every rejection is reported, not raised
                rejections.append(f"{profile.name}: {error}")
                continue
            verdicts[profile.name] = check_bundle_against_profile(verified, profile)
        profile_failures = [f"{name}: {failure}" for name, check in model_checks.items() for failure in check.failures]
        ref = {
            "uri": stored.uri,
            "sha256": stored.sha256,
            "size_bytes": stored.size_bytes,
            "model_name": spec.name,
            "version": version,
            "model_version_id": champion_model["version_id"],
            "profiles_passed": sorted(name for name, check in model_checks.items() if check.passed),
            "latency_p50_ms": latency.p50_ms,
            "latency_p99_ms": latency.p99_ms,
            "signing_key": key_label,
            "rollback_bundle": rollback and {"uri": rollback["uri"], "version": rollback["version"], "sha256": rollback["sha256"]},
        }
        yield dg.Output(
            ref,
            metadata={
                "uri": dg.MetadataValue.path(stored.uri),
                "sha256": stored.sha256,
                "version": version,
                "size_bytes": stored.size_bytes,
                "model_version_id": champion_model["version_id"],
                "latency_p50_ms": round(latency.p50_ms, 4),
                "latency_p99_ms": round(latency.p99_ms, 4),
                "wall_latency_p99_ms": round(latency.wall_p99_ms, 4),
                "profiles": dg.MetadataValue.md(
                    "| profile | passed | p99 ms / budget | failures |\n| --- | --- | --- | --- |\n"
                    + "\n".join(
                        f"| {name} | {'yes' if check.passed else 'no'} | {latency.p99_ms:.3f} / {check.profile.latency_budget_ms} | "
                        f"{'; '.join(check.failures) or '-'} |"
                        for name, check in model_checks.items()
                    )
                ),
                "signing_key": key_label + (" (DEVELOPMENT key)" if signing_key.is_dev_key else ""),
                "rollback_bundle": rollback["version"] if rollback else "none (first bundle)",
                "build": f"reproduces {release.reproduces} byte for byte (its recorded latency kept)"
                if release.reproduces
                else "a new bundle",
                "verify_command": f"python -m edge_packaging verify {stored.uri} --public-key $FLEETML_HOME/keys/dev-signing-key.pub.pem"
                if signing_key.is_dev_key
                else f"python -m edge_packaging verify {stored.uri} --public-key <release public key>",
            },
        )
        yield dg.AssetCheckResult(
            check_name=PROFILES_CHECK,
            passed=not profile_failures,
            severity=dg.AssetCheckSeverity.ERROR,
            description="all target profiles pass" if not profile_failures else "; ".join(profile_failures),
            metadata={"profiles": dg.MetadataValue.json({name: {"passed": c.passed, "failures": list(c.failures), **dict(c.figures)} for name, c in model_checks.items()})},
        )
        device_side = [f"{name}: {failure}" for name, check in verdicts.items() for failure in check.failures]
        yield dg.AssetCheckResult(
            check_name=SIGNATURE_CHECK,
            passed=not rejections and not device_side,
            severity=dg.AssetCheckSeverity.ERROR,
            description="verified with each profile's trusted key and limits"
            if not rejections and not device_side
            else "; ".join(rejections + device_side),
            metadata={"verified_for": sorted(verdicts), "signing_key": key_label},
        )

    @dg.asset(
        key=dg.AssetKey([spec.name, "rollout_plan"]),
        group_name=spec.name,
        kinds={"json"},
        code_version="1",
        io_manager_key="ref_io_manager",
        ins={"edge_bundle": dg.AssetIn(bundle_key), "training_dataset": dataset_in},
    )
    def rollout_plan(context: dg.AssetExecutionContext, config: RolloutConfig, edge_bundle: dict, training_dataset: dict) -> dg.Output[dict]:
        """A staged plan per hardware revision whose profile the bundle passed (1% canary, 10%, 50%,
        100% of its devices), the gate each stage must pass on live feedback (false-positive rate,
        latency p99 against the profile's budget, enough reviewed events, soak time) and the bundle to
        roll back to."""
        from assets.rollout_planning import plan_rollout, stages_as_json
        from edge_packaging.profiles import load_profiles
        from resources.filesystems import read_parquet

        profiles = load_profiles()
        passed = [profiles[name] for name in edge_bundle["profiles_passed"]]
        budgets = {rev: profile.latency_budget_ms for profile in passed for rev in profile.hardware_revs}
        fleet = read_parquet(training_dataset["uri"], columns=["device_id", "hardware_rev"]).to_pandas().drop_duplicates()
        devices_by_revision = fleet.groupby("hardware_rev")["device_id"].apply(list).to_dict()
        stages = plan_rollout(
            devices_by_revision,
            [rev for rev in budgets if rev in devices_by_revision],
            budgets,
            config.max_false_positive_rate,
            config.min_reviewed_events,
            config.min_soak_hours,
        )
        plan = {
            "bundle": {key: edge_bundle[key] for key in ("uri", "sha256", "version", "model_version_id")},
            "rollback_bundle": edge_bundle["rollback_bundle"],
            "stages": stages_as_json(stages),
            "not_eligible": sorted(set(devices_by_revision) - set(budgets)),
        }
        table = "\n".join(
            f"| {s.hardware_rev} | {s.name} | {s.cumulative_share:.0%} | {len(s.devices)} | FPR <= {s.gate.max_false_positive_rate:.0%}, "
            f"p99 <= {s.gate.max_latency_p99_ms} ms, >= {s.gate.min_reviewed_events} reviewed, {s.gate.min_soak_hours} h |"
            for s in stages
        )
        return dg.Output(
            plan,
            metadata={
                "bundle_version": edge_bundle["version"],
                "stages": dg.MetadataValue.md("| revision | stage | share | new devices | gate |\n| --- | --- | --- | --- | --- |\n" + table),
                "rollback_bundle": (edge_bundle["rollback_bundle"] or {}).get("version", "none (first bundle)"),
                "not_eligible_revisions": plan["not_eligible"],
            },
        )

    return [edge_model, edge_bundle, rollout_plan]
