"""A feedback batch too small to judge is reported as such, never as drifted."""

import json

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from assets.monitoring import build_monitoring_assets
from assets.partitions import feedback_batches
from pipelines.model_specs import HARSH_EVENT_MODEL as SPEC
from resources.artifact_store import ArtifactStoreResource
from resources.json_refs import JsonRefIOManager
from resources.lake import LakeResource

BATCH = "fb-vg-r5-20261110-abcdef012345"


def features(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(shift, 1.0, size=(rows, len(SPEC.feature_names))), columns=list(SPEC.feature_names))
    return frame.astype("float32")


def materialize_drift(tmp_path, current_rows: int, shift: float) -> dict:
    lake = LakeResource(uri=str(tmp_path / "lake"))
    reference = features(2000, seed=1).assign(split="train", hardware_rev="vg-r4")
    stored = lake.write_table(["harsh_event", "training_dataset"], None, pa.Table.from_pandas(reference, preserve_index=False))
    (tmp_path / "refs" / "harsh_event").mkdir(parents=True)
    (tmp_path / "refs" / "harsh_event" / "training_dataset.json").write_text(json.dumps({"uri": stored.uri}))
    current = features(current_rows, seed=2, shift=shift).assign(hardware_rev="vg-r5", model_version="1.1.0")
    lake.write_table(["harsh_event", "feedback_features"], BATCH, pa.Table.from_pandas(current, preserve_index=False))

    drift_report = next(a for a in build_monitoring_assets(SPEC) if a.key == dg.AssetKey(["harsh_event", "drift_report"]))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(feedback_batches.name, [BATCH])
    training_dataset = dg.AssetSpec(["harsh_event", "training_dataset"]).with_io_manager_key("ref_io_manager")
    result = dg.materialize(
        [drift_report, training_dataset],
        partition_key=BATCH,
        instance=instance,
        resources={
            "lake": lake,
            "artifacts": ArtifactStoreResource(uri=str(tmp_path / "artifacts")),
            "ref_io_manager": JsonRefIOManager(uri=str(tmp_path / "refs")),
        },
        selection=[drift_report.key],
    )
    return {key: value.value for key, value in result.asset_materializations_for_node("harsh_event__drift_report")[0].metadata.items()}


def test_a_batch_too_small_to_judge_is_not_reported_as_drifted(tmp_path):
    metadata = materialize_drift(tmp_path, current_rows=120, shift=3.0)  # shifted, but only 120 windows
    assert metadata["drift_judged"] is False
    assert "drifted_share" not in metadata  # the retraining sensor reads nothing to act on
    assert "too small to judge: 120 windows" in metadata["reason"]


def test_a_batch_large_enough_is_measured(tmp_path):
    metadata = materialize_drift(tmp_path, current_rows=600, shift=3.0)
    assert metadata["drift_judged"] is True and metadata["drifted_share"] > 0.9
