"""The fleetml code location: every asset, check, job and resource, built in one place."""

import dagster as dg

from assets.features import WINDOW_FEATURES_KEY, window_features
from assets.ingestion import raw_telemetry
from assets.model_lifecycle import build_model_lifecycle
from assets.validation import validated_telemetry
from pipelines.environment import current_environment, executor_for, resources_for
from pipelines.jobs import telemetry_job, training_job_for
from pipelines.model_specs import HARSH_EVENT_MODEL

ENVIRONMENT = current_environment()

defs = dg.Definitions(
    assets=[
        raw_telemetry,
        validated_telemetry,
        window_features,
        *build_model_lifecycle(HARSH_EVENT_MODEL, WINDOW_FEATURES_KEY),
    ],
    jobs=[telemetry_job, training_job_for(HARSH_EVENT_MODEL)],
    resources=resources_for(ENVIRONMENT),
    executor=executor_for(ENVIRONMENT),
)
