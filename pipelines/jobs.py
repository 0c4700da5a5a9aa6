"""Jobs of the code location."""

import dagster as dg

from assets.features import WINDOW_FEATURES_KEY
from assets.feedback import EDGE_FEEDBACK_KEY, FEEDBACK_ROW_QUARANTINE_KEY
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


def feedback_job_for(spec: ModelSpec):
    """One edge-feedback batch: validate it, compute its features, measure its drift."""
    return dg.define_asset_job(
        name="edge_feedback_job",
        selection=dg.AssetSelection.assets(
            EDGE_FEEDBACK_KEY,
            FEEDBACK_ROW_QUARANTINE_KEY,
            dg.AssetKey([spec.name, "feedback_features"]),
            dg.AssetKey([spec.name, "drift_report"]),
        ),
        description="One edge-feedback batch: validate, featurize, measure drift against the training reference.",
    )


def live_performance_job_for(spec: ModelSpec):
    return dg.define_asset_job(
        name=f"{spec.name}_live_performance_job",
        selection=dg.AssetSelection.assets(dg.AssetKey([spec.name, "live_performance"])),
        description="Live precision/recall, latency and rollout stage gates over all feedback so far.",
    )
