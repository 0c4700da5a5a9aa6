"""Jobs of the code location."""

import dagster as dg

from assets.features import WINDOW_FEATURES_KEY
from assets.model_lifecycle import lifecycle_selection
from assets.model_spec import ModelSpec

telemetry_job = dg.define_asset_job(
    name="telemetry_job",
    selection=dg.AssetSelection.groups("telemetry") | dg.AssetSelection.assets(WINDOW_FEATURES_KEY),
    description="One day of telemetry: ingest the landing zone, validate, compute harsh-event features.",
)


def training_job_for(spec: ModelSpec):
    """Train, evaluate, gate, promote, export, bundle and plan the rollout of one model family."""
    return dg.define_asset_job(
        name=f"{spec.name}_training_job",
        selection=lifecycle_selection(spec),
        description=f"{spec.name}: dataset -> candidate (Ray sweep) -> gated evaluation -> champion -> "
        "ONNX edge model -> signed bundle -> rollout plan.",
        tags={"fleetml/model": spec.name},
    )
