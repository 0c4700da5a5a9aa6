"""Every store of the platform behaves the same on a local folder and on a real S3 server.

The lake and the landing zone have their own test modules (also run on both); these are the registry,
the artifact store, the asset references and the alert log.
"""

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import pytest

from resources.alert_sink import AlertSinkResource, read_alert_log
from resources.artifact_store import ArtifactStoreResource
from resources.json_refs import JsonRefIOManager
from resources.model_registry import ModelRegistry, RegistrationMetadataIgnored, TamperedRegistryError

MODEL = "harsh_event"


def test_the_registry_registers_promotes_rolls_back_and_detects_tampering(store_root):
    registry = ModelRegistry(store_root.join("registry"))
    first = registry.register(MODEL, {"model.skops": b"weights one"}, {"validation_macro_f1": 0.9})
    second = registry.register(MODEL, {"model.skops": b"weights two"}, {"validation_macro_f1": 0.92})
    with pytest.warns(RegistrationMetadataIgnored):
        assert registry.register(MODEL, {"model.skops": b"weights one"}, {}).version_id == first.version_id

    registry.set_alias(MODEL, "champion", first.version_id, actor="test", reason="first")
    registry.set_alias(MODEL, "champion", second.version_id, actor="test", reason="better")
    registry.rollback(MODEL, actor="test", reason="false positives")

    assert registry.alias(MODEL, "champion").version_id == first.version_id
    assert [event.reason for event in registry.history(MODEL)] == ["first", "better", "false positives"]
    assert ModelRegistry(store_root.join("registry")).aliases(MODEL) == {"champion": first.version_id}
    assert registry.read_file(MODEL, second.short_id, "model.skops") == b"weights two"

    stored = registry.artifact_uri(MODEL, second.version_id, "model.skops")
    assert stored.startswith(store_root.uri)
    store_root.write(stored, b"weights TWO")
    with pytest.raises(TamperedRegistryError, match="tampered registry"):
        registry.read_file(MODEL, second.version_id, "model.skops")


def test_artifacts_are_content_addressed_and_checked_on_read(store_root):
    store = ArtifactStoreResource(uri=store_root.join("artifacts"))
    stored = store.put("bundles", "model.bundle.tar", b"bundle bytes")
    assert stored.sha256 == hashlib.sha256(b"bundle bytes").hexdigest()
    assert stored.uri == store_root.join("artifacts", "bundles", stored.sha256[:2], stored.sha256, "model.bundle.tar")
    assert store.put("bundles", "model.bundle.tar", b"bundle bytes") == stored
    assert store.get(stored.uri) == b"bundle bytes"

    store_root.write(stored.uri, b"bundle BYTES")
    with pytest.raises(ValueError, match="does not match its sha256"):
        store.get(stored.uri)


def test_asset_references_pass_from_parent_to_child(store_root):
    @dg.asset(io_manager_key="ref_io_manager")
    def edge_bundle() -> dict:
        return {"uri": "s3://bucket/bundle.tar", "sha256": "ab" * 32}

    @dg.asset(io_manager_key="ref_io_manager")
    def rollout_plan(edge_bundle: dict) -> dict:
        return {"bundle": edge_bundle["sha256"]}

    refs = JsonRefIOManager(uri=store_root.join("refs"))
    result = dg.materialize(
        [edge_bundle, rollout_plan], resources={"ref_io_manager": refs}, instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    assert json.loads(store_root.read(store_root.join("refs", "rollout_plan.json"))) == {"bundle": "ab" * 32}


def test_the_alert_log_keeps_every_line_of_concurrent_senders(store_root):
    log_path = store_root.join("alerts", "alerts.jsonl")
    sink = AlertSinkResource(log_path=log_path)

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(lambda i: sink.send({"run_id": f"run-{i}", "job": "training"}), range(12)))

    records = read_alert_log(log_path)
    assert sorted(record["run_id"] for record in records) == sorted(f"run-{i}" for i in range(12))
