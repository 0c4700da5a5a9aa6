"""Drift without false alarms: a month of a fleet that does not change requests no retrain for drift,
and each drift scenario is caught on its first day.

The champion of `champion_home` runs on the fleet it was trained on; its feedback goes through the
platform as under the daemon (feedback sensor, one `edge_feedback_job` run per batch: validation,
features, drift report), and the retraining sensor ticks once at the end of each simulated day.
"""

import pytest

from pipelines.model_specs import HARSH_EVENT_RETRAIN_POLICY as POLICY

pytestmark = pytest.mark.slow
MONTH_DAYS = 30
REASON = "fleetml/retrain_reason"


def judged_drifted(report: dict) -> bool:
    """What the retraining sensor acts on: a judged batch whose drifted share reaches the policy's."""
    return report.get("drift_judged", False) and report["drifted_share"] >= POLICY.max_drifted_share


def test_a_month_without_drift_requests_no_retrain_for_drift(fleet_loop):
    requests, batches = [], []
    for day in range(MONTH_DAYS):
        fleet_loop.deploy("none", day)
        batches += fleet_loop.drain_feedback()
        requests += fleet_loop.tick_retraining(at_s=fleet_loop.end_of_day_s(day))

    reports = fleet_loop.drift_reports()
    assert sorted(reports) == sorted(batches) and len(batches) == 2 * MONTH_DAYS  # vg-r3 and vg-r4, every day
    too_small = [batch for batch, report in reports.items() if not report["drift_judged"]]
    assert not too_small, f"batches under min_rows prove nothing about false alarms: {too_small}"
    false_alarms = {
        batch: round(report["drifted_share"], 3)
        for batch, report in reports.items()
        if judged_drifted(report)
    }
    assert not false_alarms, (
        f"no-drift batches judged drifted (threshold {POLICY.max_drifted_share}): {false_alarms}"
    )
    assert not any(report["dataset_drifted"] for report in reports.values())
    # The sensor is live: a month of reviews crosses the new-labels threshold, a legitimate retrain
    # (about 900 reviewed events a day); none of its requests may name drift.
    assert requests, "a month of reviewed labels should have requested a new-labels retrain"
    for request in requests:
        assert "drift" not in request.tags[REASON]
        assert (
            f"new reviewed labels since the last retrain (threshold {POLICY.new_labels_for_retrain})"
            in request.tags[REASON]
        )


@pytest.mark.parametrize(
    ("scenario", "drifting_revisions"),
    [("new_hardware_rev", {"vg-r5"}), ("winter", {"vg-r3", "vg-r4"})],
)
def test_a_drift_scenario_is_caught_on_its_first_day(fleet_loop, scenario, drifting_revisions):
    fleet_loop.deploy(scenario, 0)
    batches = fleet_loop.drain_feedback()
    [request] = fleet_loop.tick_retraining(at_s=fleet_loop.end_of_day_s(0))

    reports = fleet_loop.drift_reports()
    first_day = f"{fleet_loop.first_day:%Y%m%d}"
    assert {batch.split("-")[3] for batch in batches} == {first_day}  # fb-<revision>-<YYYYMMDD>-<bundle>
    drifted = {batch for batch, report in reports.items() if judged_drifted(report)}
    assert drifted and {reports[batch]["hardware_revs"][0] for batch in drifted} <= drifting_revisions
    reason = request.tags[REASON]
    assert reason.startswith("drift: ") and any(f"in batch {batch} " in reason for batch in drifted)
