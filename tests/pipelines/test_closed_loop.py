"""The whole loop on small data: deploy, feedback, drift, sensor-triggered retrain, recovery."""

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from pipelines.model_specs import HARSH_EVENT_RETRAIN_POLICY as POLICY

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[2]
REASON = "fleetml/retrain_reason"


def test_drift_triggers_a_retrain_that_recovers_the_drifted_fleet(tmp_path):
    home, dagster_home = tmp_path / "fleetml", tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text((REPO_ROOT / "deploy" / "local" / "dagster.yaml").read_text())
    env = {**os.environ, "FLEETML_HOME": str(home), "DAGSTER_HOME": str(dagster_home)}
    completed = subprocess.run(
        [sys.executable, "-m", "pipelines.demo", "--devices", "40", "--days", "5"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    output = completed.stdout
    assert completed.returncode == 0, output[-3000:] + completed.stderr[-3000:]

    recovery = float(re.search(r"recovery: [0-9.]+ / [0-9.]+ = ([0-9.]+)% of pre-drift", output).group(1))
    assert recovery >= 95.0
    before = float(re.search(r"drifted fleet, before retraining\s+\S+\s+([0-9.]+)", output).group(1))
    after = float(re.search(r"drifted fleet, after retraining\s+\S+\s+([0-9.]+)", output).group(1))
    assert after > before + 0.05  # the drift really cost something, and retraining won it back
    assert re.search(r"retraining fired: drift: \d+% of features drifted in batch fb-vg-r5-", output)
    assert re.search(r"bundles: 1\.1\.0 \(\w+\) -> 1\.2\.0 \(\w+\), rollback target of the new plan: 1\.1\.0", output)
    feedback_batches = list((home / "lake" / "edge_feedback").glob("*.parquet"))
    assert len(feedback_batches) == 9  # 3 hardware revisions x 3 days
    # Processed once: one run per batch on the instance (a second run would overwrite the lake file).
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="edge_feedback_job"))
        partitions = [run.tags["dagster/partition"] for run in runs]
    finally:
        instance.dispose()
    assert len(partitions) == len(set(partitions)) == 9


def test_the_cooldown_holds_while_drifted_feedback_keeps_arriving(fleet_loop):
    """One drift, one retrain: while the retrain runs, the vg-r5 devices keep uploading drifted
    feedback. Each new batch would fire the sensor on its own; within the cooldown it must not, and
    once the cooldown has passed a newly drifted batch fires again."""
    fleet_loop.deploy("new_hardware_rev", 0)
    fleet_loop.drain_feedback()
    fired_at_s = fleet_loop.end_of_day_s(0)
    [first] = fleet_loop.tick_retraining(at_s=fired_at_s)
    assert first.tags[REASON].startswith("drift: ")

    fleet_loop.deploy("new_hardware_rev", 1)
    during = fleet_loop.drain_feedback()
    [new_r5_batch] = [batch for batch in during if batch.startswith("fb-vg-r5-")]
    share = fleet_loop.drift_reports()[new_r5_batch]["drifted_share"]
    assert share >= POLICY.max_drifted_share  # enough to fire on its own, but for the cooldown
    assert fleet_loop.tick_retraining(at_s=fired_at_s + POLICY.cooldown_seconds - 60) == []

    fleet_loop.deploy("new_hardware_rev", 2)
    after = fleet_loop.drain_feedback()
    [second] = fleet_loop.tick_retraining(at_s=fired_at_s + POLICY.cooldown_seconds + 60)
    reason = second.tags[REASON]
    assert reason.startswith("drift: ") and "fb-vg-r5-" in reason
    assert any(f"in batch {batch} " in reason for batch in after)  # the new batch, not the suppressed one
