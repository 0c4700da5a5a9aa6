"""Edge bundles on the simulated fleet: verified before they run, feedback batched per revision and day,
telemetry of the same events unlabelled, reviews that follow the model's flags, and a ground-truth
evaluation in which vg-r5 hardware visibly hurts a model trained on r3/r4 only."""

import datetime as dt
import hashlib
import itertools
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import f1_score
from threadpoolctl import threadpool_limits

from edge_packaging.bundle import build_bundle
from edge_packaging.decision import decide_classes, with_fallback
from edge_packaging.export import export_edge_model
from edge_packaging.features import compute_window_features
from edge_packaging.feedback_contract import FEEDBACK_SCHEMA, batch_id_of, conform_to_feedback_contract
from edge_packaging.signing import generate_private_key, public_key_to_pem
from edge_packaging.telemetry_contract import HARSH_EVENT_CLASSES, TELEMETRY_SCHEMA, imu_windows
from fleet_sim.deploy import (
    DeviceRefusal,
    deploy_bundle,
    evaluate_bundle_on_fleet,
    macro_f1,
    next_telemetry_day,
    scenario_fleet,
)
from fleet_sim.fleet import build_fleet
from fleet_sim.telemetry import device_day_rng, simulate_device_day

REPO_ROOT = Path(__file__).resolve().parents[2]
START = dt.date(2026, 11, 8)
SEED = 7
DEVICES = 16
EVENTS = 30.0
THRESHOLDS = with_fallback({name: 0.3 for name in HARSH_EVENT_CLASSES if name != "benign"}, "benign")


def fake_clock_ns():
    """A clock that advances 50 us per reading: inference takes exactly 0.05 ms, run after run."""
    ticks = itertools.count(step=50_000)
    return lambda: next(ticks)


def training_windows(devices, days: int, seed: int):
    imu, speed, classes = [], [], []
    for device in devices:
        for offset in range(days):
            day = dt.date(2026, 10, 1) + dt.timedelta(days=offset)
            rng = device_day_rng(seed, device, day)
            upload = simulate_device_day(device, day, rng, events_per_device_day=50)
            imu.append(imu_windows(upload.table.column("imu")))
            speed.append(upload.table.column("speed_kph").to_numpy())
            classes.append(upload.true_class)
    return np.concatenate(imu), np.concatenate(speed), np.concatenate(classes)


@pytest.fixture(scope="module")
def signing_key():
    return generate_private_key()


@pytest.fixture(scope="module")
def public_key_path(tmp_path_factory, signing_key) -> Path:
    path = tmp_path_factory.mktemp("keys") / "trusted.pub.pem"
    path.write_bytes(public_key_to_pem(signing_key.public_key()))
    return path


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory, signing_key) -> Path:
    """A real harsh-event bundle: a tree model trained on r3/r4 devices only (a fleet of another seed)."""
    imu, speed, classes = training_windows(build_fleet(24, seed=101), days=3, seed=101)
    labels = np.array([HARSH_EVENT_CLASSES.index(name) for name in classes])
    with threadpool_limits(limits=1):
        classifier = HistGradientBoostingClassifier(max_iter=60, random_state=0)
        classifier.fit(compute_window_features(imu, speed), labels)
    model = export_edge_model(classifier, HARSH_EVENT_CLASSES)
    return build_bundle(
        tmp_path_factory.mktemp("bundles"),
        model.SerializeToString(),
        model_name="harsh_event",
        model_version="1.0.0",
        decision_thresholds=THRESHOLDS,
        private_key=signing_key,
        created_at="2026-11-01T00:00:00Z",
    )


def deploy(bundle_path, public_key_path, landing: Path, **overrides):
    arguments = dict(start=START, days=2, scenario="none", seed=SEED, devices=DEVICES)
    arguments["events_per_device_day"] = EVENTS
    arguments.update(overrides)
    return deploy_bundle(bundle_path, public_key_path, landing, **arguments)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, bundle_path, public_key_path):
    landing = tmp_path_factory.mktemp("home") / "landing"
    summary = deploy(bundle_path, public_key_path, landing, clock_ns=fake_clock_ns())
    return landing, summary


def run_fleet_sim(*args: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "fleet_sim", *args]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)


def test_feedback_is_one_conforming_batch_per_hardware_revision_and_day(deployment, bundle_path):
    landing, summary = deployment
    bundle_sha256 = hashlib.sha256(bundle_path.read_bytes()).hexdigest()
    files = sorted((landing / "edge_feedback").glob("date=*/*.parquet"))
    assert files == sorted(summary.feedback_files)
    fleet = build_fleet(DEVICES, SEED)
    revisions = {device.hardware_rev for device in fleet}
    expected = {(rev, START + dt.timedelta(days=offset)) for rev in revisions for offset in range(2)}
    batches = {}
    for path in files:
        match = re.fullmatch(r"fb-(vg-r\d)-(\d{8})-([0-9a-f]{12})", batch_id_of(path.name))
        assert match, path.name
        rev, day, short_sha = match.groups()
        assert short_sha == bundle_sha256[:12]
        batches[(rev, dt.datetime.strptime(day, "%Y%m%d").date())] = path
    assert set(batches) == expected and len(files) == len(expected)

    rows = 0
    for (rev, day), path in batches.items():
        assert pq.read_schema(path).equals(FEEDBACK_SCHEMA)
        table = conform_to_feedback_contract(pq.read_table(path))
        rows += table.num_rows
        assert set(table.column("hardware_rev").to_pylist()) == {rev}
        assert {ts.date() for ts in table.column("ts").to_pylist()} == {day}
        assert set(table.column("model_version").to_pylist()) == {"1.0.0"}
        assert set(table.column("bundle_sha256").to_pylist()) == {bundle_sha256}
        scores = np.array(table.column("scores").to_pylist(), dtype=np.float32)
        assert scores.shape == (table.num_rows, len(HARSH_EVENT_CLASSES))
        np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-4)
        decided = np.asarray(HARSH_EVENT_CLASSES)[decide_classes(scores, HARSH_EVENT_CLASSES, THRESHOLDS)]
        assert table.column("predicted_label").to_pylist() == decided.tolist()
        np.testing.assert_allclose(table.column("inference_ms").to_numpy(), 0.05, rtol=1e-6)
    assert rows == summary.events > 0


def test_telemetry_carries_the_same_events_unlabelled(deployment):
    landing, summary = deployment
    telemetry = sorted((landing / "telemetry").rglob("*.parquet"))
    assert telemetry == sorted(summary.telemetry_files)
    assert {path.parent.name for path in telemetry} == {"date=2026-11-08", "date=2026-11-09"}
    uploads = [pq.read_table(path) for path in telemetry]
    assert all(table.schema.equals(TELEMETRY_SCHEMA) for table in uploads)
    assert all(table.column("label").null_count == table.num_rows for table in uploads)
    feedback = {}
    for path in summary.feedback_files:
        for row in pq.read_table(path, columns=["event_id", "ts", "speed_kph", "imu"]).to_pylist():
            feedback[row.pop("event_id")] = row
    telemetry_rows = [row for table in uploads for row in table.to_pylist()]
    assert sorted(row["event_id"] for row in telemetry_rows) == sorted(feedback)
    for row in telemetry_rows[:: max(1, len(telemetry_rows) // 40)]:
        twin = feedback[row["event_id"]]
        assert (row["ts"], row["speed_kph"], row["imu"]) == (twin["ts"], twin["speed_kph"], twin["imu"])


def test_reviewers_check_most_flagged_events_and_spot_check_the_rest(tmp_path, bundle_path, public_key_path):
    summary = deploy(bundle_path, public_key_path, tmp_path, days=3, devices=40, events_per_device_day=40.0)
    columns = ["predicted_label", "review_label"]
    tables = [pq.read_table(path, columns=columns) for path in summary.feedback_files]
    rows = [row for table in tables for row in table.to_pylist()]
    flagged = [row["review_label"] is not None for row in rows if row["predicted_label"] != "benign"]
    passed = [row["review_label"] is not None for row in rows if row["predicted_label"] == "benign"]
    assert len(flagged) > 1500 and len(passed) > 1000
    assert np.mean(flagged) == pytest.approx(0.8, abs=0.04)
    assert np.mean(passed) == pytest.approx(0.2, abs=0.04)
    assert summary.reviewed == len([row for row in rows if row["review_label"] is not None])
    assert summary.reviewed_share == pytest.approx(summary.reviewed / len(rows))
    # About 3 % of reviews are wrong; a good model's flags are mostly confirmed.
    assert 0.01 < summary.review_errors / summary.reviewed < 0.06
    reviewed = [row for row in rows if row["review_label"] is not None]
    confirmed = [row["review_label"] == row["predicted_label"] for row in reviewed]
    assert np.mean(confirmed) > 0.8
    assert 0.85 < summary.accuracy < 1.0


def test_same_seed_writes_the_same_bytes(tmp_path, deployment, bundle_path, public_key_path):
    landing, _ = deployment
    again = deploy(bundle_path, public_key_path, tmp_path / "again", clock_ns=fake_clock_ns())
    assert [p.relative_to(tmp_path / "again") for p in again.feedback_files] == [
        p.relative_to(landing) for p in deployment[1].feedback_files
    ]
    for first in sorted(landing.rglob("*.parquet")):
        assert (tmp_path / "again" / first.relative_to(landing)).read_bytes() == first.read_bytes()

    # With the real clock only the measured inference time differs.
    timed = deploy(bundle_path, public_key_path, tmp_path / "timed")
    for first, second in zip(deployment[1].feedback_files, timed.feedback_files, strict=True):
        measured = pq.read_table(second)
        untimed = pq.read_table(first).drop_columns(["inference_ms"])
        assert measured.drop_columns(["inference_ms"]).equals(untimed)
        assert 0 < min(measured.column("inference_ms").to_pylist()) < 100
    assert timed.telemetry_files[0].read_bytes() == deployment[1].telemetry_files[0].read_bytes()


def test_deployed_traffic_is_not_the_telemetry_commands_traffic(deployment):
    _, summary = deployment
    device = build_fleet(1, SEED)[0]
    rng = device_day_rng(SEED, device, START)
    telemetry = simulate_device_day(device, START, rng, events_per_device_day=EVENTS)
    deployed = pq.read_table(next(p for p in summary.telemetry_files if p.name.startswith(device.device_id)))
    assert deployed.column("ts").to_pylist() != telemetry.table.column("ts").to_pylist()


@pytest.mark.parametrize("problem", ["tampered", "wrong_key", "missing_key"])
def test_refused_bundle_exits_non_zero_and_writes_nothing(tmp_path, bundle_path, public_key_path, problem):
    bundle, key = bundle_path, public_key_path
    if problem == "tampered":
        with tarfile.open(bundle_path) as archive:
            model_offset = archive.getmember("model.onnx").offset_data
        data = bytearray(bundle_path.read_bytes())
        data[model_offset + 100] ^= 0x01
        bundle = tmp_path / bundle_path.name
        bundle.write_bytes(bytes(data))
    elif problem == "wrong_key":
        key = tmp_path / "other.pub.pem"
        key.write_bytes(public_key_to_pem(generate_private_key().public_key()))
    else:
        key = tmp_path / "absent.pub.pem"
    home = tmp_path / "home"
    args = ["--bundle", str(bundle), "--public-key", str(key), "--home", str(home), "--devices", "2"]
    result = run_fleet_sim("deploy", "--days", "1", "--start", "2026-11-08", *args)
    assert result.returncode != 0
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
    reasons = {"tampered": "hash_mismatch", "wrong_key": "untrusted_key", "missing_key": "absent.pub.pem"}
    assert reasons[problem] in result.stderr
    assert not home.exists()
    with pytest.raises(DeviceRefusal):
        evaluate_bundle_on_fleet(bundle, key, START, "none", SEED, 2)


def test_cli_deploy_continues_after_the_latest_telemetry_day_with_the_home_dev_key(
    tmp_path, bundle_path, public_key_path
):
    home = tmp_path / "home"
    (home / "keys").mkdir(parents=True)
    (home / "keys" / "dev-signing-key.pub.pem").write_bytes(public_key_path.read_bytes())
    (home / "landing" / "telemetry" / "date=2026-11-03").mkdir(parents=True)
    (home / "landing" / "telemetry" / "date=2026-11-05").mkdir()
    assert next_telemetry_day(home / "landing") == dt.date(2026, 11, 6)
    args = ["--bundle", str(bundle_path), "--home", str(home), "--devices", "3", "--seed", "4"]
    result = run_fleet_sim("deploy", "--days", "2", "--scenario", "new_hardware_rev", *args)
    assert result.returncode == 0, result.stderr
    summary = result.stdout.strip()
    assert len(summary.splitlines()) == 1
    assert "2026-11-06..2026-11-07" in summary and "vg-r5=1" in summary and "reviewed" in summary
    days = sorted(path.name for path in (home / "landing" / "telemetry").iterdir())
    assert days == ["date=2026-11-03", "date=2026-11-05", "date=2026-11-06", "date=2026-11-07"]
    batches = [batch_id_of(path.name) for path in (home / "landing" / "edge_feedback").glob("date=*/*.parquet")]
    assert {batch.split("-")[3] for batch in batches} == {"20261106", "20261107"}  # fb-vg-rN-YYYYMMDD-sha

    evaluated = run_fleet_sim("evaluate", "--day", "2026-12-01", "--scenario", "winter", *args)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "macro-F1" in evaluated.stdout and len(evaluated.stdout.strip().splitlines()) == 1


def test_new_hardware_rev_adds_new_vehicles_on_vg_r5():
    existing = build_fleet(70, SEED)
    fleet = scenario_fleet("new_hardware_rev", 70, SEED)
    assert list(fleet.devices[:70]) == existing
    joining = fleet.devices[70:]
    assert len(joining) == 28
    assert [device.index for device in joining] == list(range(70, 98))
    assert {device.hardware_rev for device in joining} == {"vg-r5"}
    assert fleet.devices_by_revision()["vg-r5"] == 28 and fleet.season == "default"
    assert scenario_fleet("none", 70, SEED).devices == tuple(existing)
    assert scenario_fleet("winter", 70, SEED).season == "winter"
    with pytest.raises(ValueError, match="unknown scenario"):
        scenario_fleet("monsoon", 70, SEED)


def test_vg_r5_drift_costs_macro_f1_on_the_fleet(bundle_path, public_key_path):
    day = dt.date(2026, 12, 1)
    before = evaluate_bundle_on_fleet(bundle_path, public_key_path, day, "none", SEED, 40)
    drifted = evaluate_bundle_on_fleet(bundle_path, public_key_path, day, "new_hardware_rev", SEED, 40)
    print(
        f"\nmacro-F1 none {before.macro_f1:.3f} ({before.windows} windows) "
        f"new_hardware_rev {drifted.macro_f1:.3f} ({drifted.windows} windows) "
        f"by revision {drifted.by_revision}"
    )
    assert set(before.by_revision) == {"vg-r3", "vg-r4"}
    assert set(drifted.by_revision) == {"vg-r3", "vg-r4", "vg-r5"}
    assert before.macro_f1 > 0.85
    assert drifted.macro_f1 < before.macro_f1 - 0.08
    existing_hardware = min(drifted.by_revision["vg-r3"], drifted.by_revision["vg-r4"])
    assert drifted.by_revision["vg-r5"] < existing_hardware - 0.3
    # The existing vehicles' traffic is the same day's in both scenarios.
    assert drifted.by_revision["vg-r3"] == pytest.approx(before.by_revision["vg-r3"])
    assert set(before.per_class_f1) == set(HARSH_EVENT_CLASSES)
    assert drifted.windows > before.windows


def test_macro_f1_matches_sklearn_over_the_classes_present():
    rng = np.random.default_rng(0)
    truth = rng.choice(["harsh_brake", "benign", "collision"], size=300)
    predicted = np.where(rng.random(300) < 0.7, truth, rng.choice(list(HARSH_EVENT_CLASSES), size=300))
    present = sorted(set(truth.tolist()))
    expected = f1_score(truth, predicted, labels=present, average="macro")
    assert macro_f1(truth, predicted, HARSH_EVENT_CLASSES) == pytest.approx(expected)


def test_winter_adds_rough_road_benign_events(tmp_path, bundle_path, public_key_path):
    default = deploy(bundle_path, public_key_path, tmp_path / "default", days=1, devices=30)
    winter = deploy(bundle_path, public_key_path, tmp_path / "winter", days=1, devices=30, scenario="winter")
    runs = {"default": default, "winter": winter}
    benign_share = {run: summary.class_counts["benign"] / summary.events for run, summary in runs.items()}
    assert benign_share["default"] == pytest.approx(0.40, abs=0.05)
    assert benign_share["winter"] > benign_share["default"] + 0.12
    assert winter.events > 1.25 * default.events
