"""The closed loop on a small fleet, driven in-process the way the daemon drives it.

`champion_home` trains a champion once per session with the code location's own jobs (telemetry
job per day, then the training job) on a simulated fleet. `fleet_loop` gives each test a copy of
that home and a fresh instance, deploys the champion's bundle to the same fleet under a scenario
(`fleet_sim.deploy`), ticks the edge-feedback sensor and executes the runs it requests, and ticks the
retraining sensor on a simulated clock, so a month of feedback takes minutes and the cooldown can be
crossed without waiting six hours.
"""

import datetime as dt
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import dagster as dg
import pytest

from pipelines.demo_loop import SensorTicker, execute

if TYPE_CHECKING:
    from fleet_sim.deploy import DeploySummary

LOOP_DEVICES = 40
"""The fleet: about 1,000 vg-r3 and 550 vg-r4 windows a day (one feedback batch per revision and day),
16 vg-r5 vehicles joining in `new_hardware_rev`. Every batch is over the drift report's `min_rows`."""
LOOP_SEED = 3
TRAINING_START = dt.date(2026, 11, 1)
TRAINING_DAYS = 5
DEPLOY_START = TRAINING_START + dt.timedelta(days=TRAINING_DAYS)
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
SMALL_SWEEP = {"learning_rates": [0.1], "max_leaf_nodes": [15], "l2_regularization": [0.0], "max_iter": 60}


def loop_definitions(home: Path) -> dg.Definitions:
    """The code location's assets, jobs and sensors, with the local resources rooted at `home`
    (`pipelines.definitions` roots them at `$FLEETML_HOME` when it is imported)."""
    from platform_resources import home_resources

    from pipelines.definitions import defs
    from resources.alert_sink import AlertSinkResource

    resources = {
        **home_resources(home),
        "alert_sink": AlertSinkResource(log_path=str(home / "alerts" / "alerts.jsonl")),
    }
    missing = set(defs.resources) - set(resources)
    assert not missing, f"the loop tests do not root these resources in their home: {missing}"
    return dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        sensors=defs.sensors,
        resources=resources,
    )


@pytest.fixture(scope="session")
def champion_home(tmp_path_factory) -> Path:
    """A home whose champion was trained, gated and bundled by the code location's jobs on
    `TRAINING_DAYS` days of the simulated fleet."""
    from fleet_sim.telemetry import simulate_telemetry

    home = tmp_path_factory.mktemp("champion_home")
    simulate_telemetry(
        home / "landing", TRAINING_START, TRAINING_DAYS, LOOP_DEVICES, LOOP_SEED, progress=False
    )
    defs = loop_definitions(home)
    instance = dg.DagsterInstance.ephemeral()
    telemetry_job = defs.resolve_job_def("telemetry_job")
    for offset in range(TRAINING_DAYS):
        day = str(TRAINING_START + dt.timedelta(days=offset))
        assert telemetry_job.execute_in_process(
            instance=instance, partition_key=day, run_config=QUIET
        ).success
    trained = defs.resolve_job_def("harsh_event_training_job").execute_in_process(
        instance=instance,
        run_config={**QUIET, "ops": {"harsh_event__candidate_model": {"config": SMALL_SWEEP}}},
        raise_on_error=False,
    )
    assert trained.success, [
        check.description for check in trained.get_asset_check_evaluations() if not check.passed
    ]
    instance.dispose()
    return home


@dataclass
class FleetLoop:
    """The champion's bundle on the fleet, its feedback through the platform, the retraining sensor."""

    home: Path
    defs: dg.Definitions
    instance: dg.DagsterInstance
    now_s: float
    """The retraining sensor's clock (seconds since the epoch), moved by the test."""
    first_day: dt.date = DEPLOY_START
    """Deployment day 0, the day after the training days."""
    feedback: SensorTicker = field(init=False)
    retraining: SensorTicker = field(init=False)

    def __post_init__(self) -> None:
        self.feedback = SensorTicker(self.defs, "edge_feedback_sensor", self.instance)
        self.retraining = SensorTicker(self.defs, "retraining_sensor", self.instance)

    @property
    def bundle(self) -> dict:
        return json.loads((self.home / "refs" / "harsh_event" / "edge_bundle.json").read_text())

    def deploy(self, scenario: str, day: int, days: int = 1) -> "DeploySummary":
        """Devices run the champion's bundle on deployment days `day` .. `day + days - 1` (0 is the
        first day after training) and upload their feedback, one batch per hardware revision and day."""
        from fleet_sim.deploy import deploy_bundle

        return deploy_bundle(
            self.bundle["uri"],
            self.home / "keys" / "dev-signing-key.pub.pem",
            self.home / "landing",
            self.first_day + dt.timedelta(days=day),
            days,
            scenario,
            LOOP_SEED,
            LOOP_DEVICES,
        )

    def drain_feedback(self) -> list[str]:
        """Tick the feedback sensor until the landing zone is drained, running each requested batch
        through `edge_feedback_job` as the daemon would; the batches processed."""
        batches = []
        while requests := self.feedback.tick():
            for request in requests:
                result = execute(self.defs, "edge_feedback_job", self.instance, request, self.feedback.name)
                assert result.success, f"feedback batch {request.partition_key} failed"
                batches.append(request.partition_key)
        return batches

    def end_of_day_s(self, day: int) -> float:
        """23:00 UTC of deployment day `day` on the sensor's clock: the day's uploads are in."""
        return dt.datetime.combine(self.first_day + dt.timedelta(days=day), dt.time(23), dt.UTC).timestamp()

    def tick_retraining(self, at_s: float) -> list[dg.RunRequest]:
        """One tick of the retraining sensor at `at_s` on its clock."""
        self.now_s = at_s
        return self.retraining.tick()

    def drift_reports(self) -> dict[str, dict]:
        """The latest drift report of every batch: its metadata by batch id."""
        records = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(["harsh_event", "drift_report"])), limit=10_000
        ).records
        reports = {}
        for record in sorted(records, key=lambda r: r.storage_id):
            reports[record.partition_key] = {
                k: v.value for k, v in record.asset_materialization.metadata.items()
            }
        return reports


@pytest.fixture
def fleet_loop(champion_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FleetLoop:
    """A copy of the champion's home and a fresh instance; the retraining sensor reads the loop's
    clock, which starts at midnight UTC of the first deployment day."""
    from sensors import retraining

    home = Path(shutil.copytree(champion_home, tmp_path / "home"))
    instance = dg.DagsterInstance.ephemeral()
    start_s = dt.datetime.combine(DEPLOY_START, dt.time(), dt.UTC).timestamp()
    loop = FleetLoop(home, loop_definitions(home), instance, start_s)
    monkeypatch.setattr(retraining, "time", SimpleNamespace(time=lambda: loop.now_s))
    yield loop
    instance.dispose()
