"""The retraining sensor: reads only the materializations that arrived since its cursor and requests
the training job (tagged with why) when the policy says so."""

import json
import time

import dagster as dg

from sensors.retraining_policy import RetrainPolicy, Signals, decide


def _new_records(instance: dg.DagsterInstance, key: dg.AssetKey, after: int | None, limit: int = 500):
    return instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=limit).records


def _metadata(record) -> dict:
    return {name: value.value for name, value in record.asset_materialization.metadata.items()}


def build_retraining_sensor(
    job,
    drift_key: dg.AssetKey,
    live_key: dg.AssetKey,
    feedback_key: dg.AssetKey,
    policy: RetrainPolicy = RetrainPolicy(),
    minimum_interval_seconds: int = 60,
) -> dg.SensorDefinition:
    @dg.sensor(
        name="retraining_sensor",
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests the training job when a feedback batch drifts past the threshold, live precision "
        "or recall of the deployed model falls below its floor, or enough new reviewed labels arrived; "
        "with a cooldown, so one drift produces one retrain.",
    )
    def retraining_sensor(context: dg.SensorEvaluationContext):
        state = json.loads(context.cursor) if context.cursor else {}
        drift = _new_records(context.instance, drift_key, state.get("drift_after"))
        live = _new_records(context.instance, live_key, state.get("live_after"))
        feedback = _new_records(context.instance, feedback_key, state.get("feedback_after"))

        drifts = [(_metadata(r).get("drifted_share", 0.0), r.partition_key) for r in drift]
        latest_live = _metadata(live[0]) if live else {}  # records come newest first
        signals = Signals(
            worst_drift=max(drifts) if drifts else None,
            live_macro_f1=latest_live.get("live_macro_f1"),
            live_min_recall=(latest_live["live_min_recall"], latest_live.get("live_min_recall_class"))
            if latest_live.get("live_min_recall") is not None
            else None,
            live_reviewed=latest_live.get("reviewed_rows_current_version", 0) or 0,
            live_model_version=latest_live.get("model_version"),
            # Events re-sent in a later batch were counted by the batch that first brought their review.
            new_labels=sum(_metadata(r).get("new_reviewed_rows", 0) for r in feedback),
        )
        now = time.time()
        decision = decide(signals, state.get("labels_since_retrain", 0), policy, now, state.get("last_fired_at"))
        next_state = {
            "drift_after": max((r.storage_id for r in drift), default=state.get("drift_after")),
            "live_after": max((r.storage_id for r in live), default=state.get("live_after")),
            "feedback_after": max((r.storage_id for r in feedback), default=state.get("feedback_after")),
            "labels_since_retrain": 0 if decision.fire else state.get("labels_since_retrain", 0) + signals.new_labels,
            "last_fired_at": now if decision.fire else state.get("last_fired_at"),
        }
        cursor = json.dumps(next_state, sort_keys=True)
        if decision.suppressed_by_cooldown:
            context.log.info(f"retraining suppressed by the cooldown: {'; '.join(decision.reasons)}")
        if not decision.fire:
            return dg.SensorResult(skip_reason="no retraining threshold crossed" if not decision.reasons else "cooldown", cursor=cursor)
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"retrain-{next_state['drift_after']}-{next_state['live_after']}-{next_state['feedback_after']}",
                    tags={
                        "fleetml/trigger": "retraining_sensor",
                        "fleetml/retrain_reason": "; ".join(decision.reasons)[:1000],
                        "fleetml/retrain_figures": json.dumps(decision.figures, sort_keys=True)[:1000],
                    },
                )
            ],
            cursor=cursor,
        )

    return retraining_sensor
