"""The retraining trigger: fires once per drift episode, with its reason; never without a signal."""

import json
import time

import dagster as dg
import pytest

from sensors.retraining import build_retraining_sensor
from sensors.retraining_policy import RetrainPolicy, Signals, decide

DRIFT = dg.AssetKey(["harsh_event", "drift_report"])
LIVE = dg.AssetKey(["harsh_event", "live_performance"])
FEEDBACK = dg.AssetKey("edge_feedback")
POLICY = RetrainPolicy(max_drifted_share=0.3, min_live_macro_f1=0.8, min_live_recall=0.7, min_reviewed_for_live=100,
                       new_labels_for_retrain=1000, cooldown_seconds=3600)


def test_no_signal_no_retrain():
    assert not decide(Signals(), 0, POLICY, now_s=0, last_fired_s=None).fire
    calm = Signals(worst_drift=(0.1, "b1"), live_macro_f1=0.95, live_min_recall=(0.9, "collision"), live_reviewed=500)
    assert not decide(calm, 0, POLICY, now_s=0, last_fired_s=None).fire


def test_each_threshold_fires_with_its_reason():
    drift = decide(Signals(worst_drift=(0.45, "fb-north")), 0, POLICY, 0, None)
    assert drift.fire and "45% of features drifted in batch fb-north" in drift.reasons[0]
    live = decide(Signals(live_macro_f1=0.6, live_reviewed=150, live_model_version="1.1.0"), 0, POLICY, 0, None)
    assert live.fire and live.figures["live_macro_f1"] == 0.6
    recall = decide(Signals(live_min_recall=(0.5, "collision"), live_reviewed=150), 0, POLICY, 0, None)
    assert recall.fire and "recall of collision" in recall.reasons[0]
    labels = decide(Signals(new_labels=400), 700, POLICY, 0, None)
    assert labels.fire and labels.figures["new_labels"] == 1100


def test_live_quality_needs_enough_reviews_and_the_cooldown_suppresses():
    assert not decide(Signals(live_macro_f1=0.2, live_reviewed=99), 0, POLICY, 0, None).fire
    cooling = decide(Signals(worst_drift=(0.9, "b")), 0, POLICY, now_s=1000, last_fired_s=500)
    assert not cooling.fire and cooling.suppressed_by_cooldown
    assert decide(Signals(worst_drift=(0.9, "b")), 0, POLICY, now_s=5000, last_fired_s=500).fire


def _report(instance, key, partition, **metadata):
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition, metadata=metadata))


@pytest.fixture
def sensor_and_instance():
    job = dg.define_asset_job("harsh_event_training_job", selection=[dg.AssetKey(["harsh_event", "training_dataset"])])
    sensor = build_retraining_sensor(job, DRIFT, LIVE, FEEDBACK, POLICY)
    return sensor, dg.DagsterInstance.ephemeral()


def tick(sensor, instance, cursor):
    result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
    return result, result.cursor


def test_one_drift_one_retrain_then_cooldown(sensor_and_instance):
    sensor, instance = sensor_and_instance
    result, cursor = tick(sensor, instance, None)
    assert not result.run_requests

    _report(instance, DRIFT, "fb-north-1", drifted_share=0.1)
    _report(instance, DRIFT, "fb-south-1", drifted_share=0.55)
    result, cursor = tick(sensor, instance, cursor)
    [request] = result.run_requests
    assert "55% of features drifted in batch fb-south-1" in request.tags["fleetml/retrain_reason"]
    assert json.loads(request.tags["fleetml/retrain_figures"])["drifted_share"] == 0.55

    result, cursor = tick(sensor, instance, cursor)  # the same materializations are not read twice
    assert not result.run_requests
    _report(instance, DRIFT, "fb-south-2", drifted_share=0.6)  # the same episode, within the cooldown
    result, cursor = tick(sensor, instance, cursor)
    assert not result.run_requests
    assert json.loads(cursor)["last_fired_at"] is not None


def test_without_drift_nothing_is_triggered(sensor_and_instance):
    sensor, instance = sensor_and_instance
    cursor = None
    for batch in range(5):
        _report(instance, DRIFT, f"fb-{batch}", drifted_share=0.05)
        _report(instance, FEEDBACK, f"fb-{batch}", reviewed_rows=80, new_reviewed_rows=50)
        _report(instance, LIVE, None, live_macro_f1=0.93, live_min_recall=0.88, live_min_recall_class="harsh_turn",
                reviewed_rows_current_version=300, model_version="1.1.0")
        result, cursor = tick(sensor, instance, cursor)
        assert not result.run_requests
    assert json.loads(cursor)["labels_since_retrain"] == 250


def test_an_old_drift_does_not_fire_again_once_the_cooldown_has_passed(sensor_and_instance, monkeypatch):
    import sensors.retraining as retraining

    sensor, instance = sensor_and_instance
    _report(instance, DRIFT, "fb-south-1", drifted_share=0.55)
    result, cursor = tick(sensor, instance, None)
    assert len(result.run_requests) == 1

    later = time.time() + POLICY.cooldown_seconds + 60
    monkeypatch.setattr(retraining.time, "time", lambda: later)
    result, cursor = tick(sensor, instance, cursor)  # nothing new arrived: the old batch is history

    assert not result.run_requests
    _report(instance, DRIFT, "fb-south-2", drifted_share=0.6)  # a new drift after the cooldown does fire
    result, cursor = tick(sensor, instance, cursor)
    assert len(result.run_requests) == 1
