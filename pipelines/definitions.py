"""The fleetml code location: every asset, check, job, schedule, sensor and resource, built in one place."""

import dagster as dg

from assets.features import WINDOW_FEATURES_KEY, window_features
from assets.feedback import EDGE_FEEDBACK_KEY, build_feedback_features_asset, edge_feedback
from assets.ingestion import raw_telemetry
from assets.model_lifecycle import build_model_lifecycle
from assets.monitoring import build_monitoring_assets
from assets.partitions import feedback_batches
from assets.validation import validated_telemetry
from pipelines.environment import current_environment, executor_for, resources_for, schedule_status_for
from pipelines.jobs import feedback_job_for, live_performance_job_for, telemetry_job, training_job_for
from pipelines.model_specs import HARSH_EVENT_MODEL, HARSH_EVENT_RETRAIN_POLICY
from sensors.alerts import run_failure_alert_sensor
from sensors.edge_feedback import build_edge_feedback_sensor
from sensors.retraining import build_retraining_sensor

ENVIRONMENT = current_environment()
SPEC = HARSH_EVENT_MODEL

training_job = training_job_for(SPEC)
feedback_job = feedback_job_for(SPEC)

defs = dg.Definitions(
    assets=[
        raw_telemetry,
        validated_telemetry,
        window_features,
        *build_model_lifecycle(SPEC, WINDOW_FEATURES_KEY),
        edge_feedback,
        build_feedback_features_asset(SPEC.name),
        *build_monitoring_assets(SPEC),
    ],
    jobs=[telemetry_job, training_job, feedback_job, live_performance_job_for(SPEC)],
    schedules=[
        dg.build_schedule_from_partitioned_job(
            telemetry_job,
            name="daily_telemetry_schedule",
            hour_of_day=1,
            default_status=schedule_status_for(ENVIRONMENT),
            description="Ingest, validate and featurize yesterday's telemetry every night (UTC).",
        ),
        dg.ScheduleDefinition(
            name="weekly_retrain_schedule",
            job=training_job,
            cron_schedule="0 3 * * 1",
            execution_timezone="UTC",
            default_status=dg.DefaultScheduleStatus.STOPPED,
            tags={"fleetml/trigger": "weekly_retrain_schedule", "fleetml/retrain_reason": "weekly schedule"},
            description="Retrain every Monday at 03:00 UTC (stopped by default; drift and live quality trigger retraining).",
        ),
    ],
    sensors=[
        build_edge_feedback_sensor(feedback_job, feedback_batches),
        build_retraining_sensor(
            training_job,
            drift_key=dg.AssetKey([SPEC.name, "drift_report"]),
            live_key=dg.AssetKey([SPEC.name, "live_performance"]),
            feedback_key=EDGE_FEEDBACK_KEY,
            policy=HARSH_EVENT_RETRAIN_POLICY,
        ),
        run_failure_alert_sensor,
        dg.AutomationConditionSensorDefinition(
            name="automation_condition_sensor",
            target=dg.AssetSelection.all(),
            default_status=dg.DefaultSensorStatus.RUNNING,
            description="Evaluates the assets' automation conditions (validated telemetry and features follow "
            "new raw telemetry once the validation gates pass).",
        ),
    ],
    resources=resources_for(ENVIRONMENT),
    executor=executor_for(ENVIRONMENT),
)
