"""The fleetml code location: every asset, check, job and resource, built in one place."""

import dagster as dg

from assets.features import window_features
from assets.ingestion import raw_telemetry
from assets.validation import validated_telemetry
from pipelines.environment import current_environment, executor_for, resources_for
from pipelines.jobs import telemetry_job

ENVIRONMENT = current_environment()

defs = dg.Definitions(
    assets=[raw_telemetry, validated_telemetry, window_features],
    jobs=[telemetry_job],
    resources=resources_for(ENVIRONMENT),
    executor=executor_for(ENVIRONMENT),
)
