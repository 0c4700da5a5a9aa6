"""Edge bundles running on the simulated fleet: the feedback half of the loop, and its ground truth.

`deploy_bundle` is what a rollout looks like from the landing zone. Every device verifies the bundle
as firmware would (`edge_packaging.bundle.verify_bundle` with the key it trusts), then, day by day,
triggers events, scores each window on its own with onnxruntime on one thread, decides a class with
the manifest's thresholds and uploads: the raw windows as telemetry (unlabelled: labels of deployed
traffic come back only through review), and the scored events as edge feedback, collected by the
device backend per hardware revision (each revision has its own firmware and upload agent) into one
file per revision and day. Safety managers review what the model
flagged and spot-check the rest (`reviews`).

`evaluate_bundle_on_fleet` measures a bundle against the simulator's true classes on a fresh day of
a scenario's fleet: the figure a real fleet can never give, which the demo uses to show what drift
costs and what retraining wins back.

Scenarios: `none` is the fleet as it is; `new_hardware_rev` adds new vehicles carrying vg-r5
gateways (a sideways, tilted bracket and a cheaper IMU); `winter` puts every device in winter.

Every random stream derives from (seed, purpose, device, day), with purposes distinct from the
telemetry command's, so deployed and evaluation traffic never repeat telemetry traffic. Only the
measured `inference_ms` varies between runs with the same arguments.
"""

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from edge_packaging.bundle import BundleRejected, VerifiedBundle, verify_bundle
from edge_packaging.decision import decide_classes
from edge_packaging.feedback_contract import FEEDBACK_SCHEMA, batch_id_of
from edge_packaging.signing import KeyLoadError, load_public_key_file
from edge_packaging.telemetry_contract import HARSH_EVENT_CLASSES, imu_windows
from fleet_sim.events import check_season
from fleet_sim.fleet import Device, build_device, build_fleet
from fleet_sim.landing import folder_names, landing_join, write_parquet_atomically
from fleet_sim.reviews import review_deployed_events
from fleet_sim.telemetry import TELEMETRY_DIR, simulate_device_day, upload_path

SCENARIOS: tuple[str, ...] = ("none", "new_hardware_rev", "winter")
NEW_HARDWARE_REV = "vg-r5"
NEW_VEHICLE_SHARE = 0.4
"""New vehicles joining the fleet in `new_hardware_rev`, as a share of the existing fleet's size."""
FEEDBACK_DIR = "edge_feedback"
DEV_PUBLIC_KEY = Path("keys") / "dev-signing-key.pub.pem"
"""Where the development public key sits under the fleetml home (see `signing.ensure_dev_key_pair`)."""
BATCH_SHA_HEX_CHARS = 12

# Random-stream purposes, apart from the fleet's (0xF1EE7) and the telemetry command's (0x7E1E).
_DEPLOY_STREAM = 0xDE9107
_EVALUATION_STREAM = 0xE7A1


class DeviceRefusal(Exception):
    """The devices will not run a bundle; the message is the one-line reason."""


@dataclass(frozen=True)
class ScenarioFleet:
    """The devices of a scenario and the season they drive in."""

    scenario: str
    devices: tuple[Device, ...]
    season: str

    def devices_by_revision(self) -> dict[str, int]:
        return dict(sorted(Counter(device.hardware_rev for device in self.devices).items()))


@dataclass(frozen=True)
class DeploySummary:
    """What a deployment wrote, with the simulator's ground truth as sanity figures."""

    model_version: str
    bundle_sha256: str
    scenario: str
    start: dt.date
    days: int
    devices_by_revision: dict[str, int]
    feedback_files: tuple[Path, ...]
    telemetry_files: tuple[Path, ...]
    events: int
    reviewed: int
    correct_predictions: int
    """Events whose decided class is their true class."""
    review_errors: int
    """Reviewed events whose review label is not their true class."""
    class_counts: dict[str, int]
    """True classes of the deployed events."""
    inference_p50_ms: float
    inference_p99_ms: float

    @property
    def reviewed_share(self) -> float:
        return self.reviewed / self.events if self.events else 0.0

    @property
    def accuracy(self) -> float:
        return self.correct_predictions / self.events if self.events else 0.0


@dataclass(frozen=True)
class FleetEvaluation:
    """A bundle's decisions on a fresh day of a scenario's fleet, scored against the true classes.

    Macro-F1 averages the F1 of the classes that occur in the traffic; `by_revision` is the same
    figure on each hardware revision's windows alone.
    """

    macro_f1: float
    per_class_f1: dict[str, float]
    windows: int
    by_revision: dict[str, float]
    scenario: str = "none"
    day: dt.date | None = None
    model_version: str = ""
    bundle_sha256: str = ""


class _DeviceRuntime:
    """A verified bundle loaded as the devices of `fleet` run it: the manifest's classes and decision
    rule, and one onnxruntime session on one thread, for a model the device profile of every hardware
    revision in the fleet admits (one runtime serves them all)."""

    def __init__(self, bundle: VerifiedBundle, fleet: ScenarioFleet) -> None:
        from edge_packaging.profiles import ModelRefused, admit_model, load_profiles, profile_for_hardware_rev
        from edge_packaging.runtime import EdgeModelSession

        manifest = bundle.manifest
        if set(manifest.class_names) != set(HARSH_EVENT_CLASSES):
            raise DeviceRefusal(
                f"bundle {bundle.path.name} decides classes {', '.join(manifest.class_names)}; the fleet's "
                f"harsh-event devices expect {', '.join(HARSH_EVENT_CLASSES)}"
            )
        known = load_profiles()
        profiles = {}
        for hardware_rev in fleet.devices_by_revision():
            profile = profile_for_hardware_rev(hardware_rev, known)
            if profile is None:
                raise DeviceRefusal(f"no device profile covers hardware revision {hardware_rev}")
            profiles[profile.name] = profile
        if not profiles:
            raise DeviceRefusal(f"the {fleet.scenario} fleet has no devices to run bundle {bundle.path.name}")
        try:
            admitted = admit_model(bundle.model_bytes, profiles.values())
        except ModelRefused as refusal:
            raise DeviceRefusal(f"bundle {bundle.path.name}: the model is {refusal}") from refusal
        try:
            self.session = EdgeModelSession(admitted, threads=1)
        except Exception as error:  # onnxruntime raises its own types for models it cannot load
            reason = f"bundle {bundle.path.name}: the model does not load: {_first_line(error)}"
            raise DeviceRefusal(reason) from error
        self.bundle = bundle
        self.class_names = manifest.class_names
        self.thresholds = manifest.decision_thresholds
        self.fallback_class = manifest.fallback_class

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """Class names [N] decided from scores [N, classes] by the manifest's thresholds."""
        indices = decide_classes(scores, self.class_names, self.thresholds)
        return np.asarray(self.class_names)[indices]


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_bundle_on_device(bundle_path: str | Path, public_key_path: str | Path) -> VerifiedBundle:
    """Verify a bundle as a device does, trusting only the key in `public_key_path`.

    Raises `DeviceRefusal` with a one-line reason when the key cannot be read or the bundle does not
    check out (signature, hashes, paths, layout: `verify_bundle`).
    """
    try:
        public_key = load_public_key_file(public_key_path)
    except KeyLoadError as error:
        raise DeviceRefusal(f"cannot load the trusted key: {_first_line(error)}") from error
    try:
        return verify_bundle(bundle_path, [public_key])
    except BundleRejected as error:
        reason = f"bundle {Path(bundle_path).name} rejected ({error.code}): {error.reason}"
        raise DeviceRefusal(reason) from error


def scenario_fleet(scenario: str, devices: int, seed: int) -> ScenarioFleet:
    """The fleet of `scenario`: `build_fleet(devices, seed)`, plus for `new_hardware_rev` about
    `NEW_VEHICLE_SHARE * devices` new vehicles on vg-r5 gateways (indices after the existing ones)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    if devices < 0:
        raise ValueError("devices must not be negative")
    fleet = build_fleet(devices, seed)
    if scenario == "new_hardware_rev":
        joining = round(NEW_VEHICLE_SHARE * devices)
        new_indices = range(devices, devices + joining)
        fleet += [build_device(index, seed, (NEW_HARDWARE_REV,)) for index in new_indices]
    season = "winter" if scenario == "winter" else "default"
    return ScenarioFleet(scenario, tuple(fleet), check_season(season))


def batch_id(hardware_rev: str, day: dt.date, bundle_sha256: str) -> str:
    """The feedback batch of one hardware revision's devices for `day` under a bundle:
    `fb-<hardware_rev>-<YYYYMMDD>-<first 12 hex of the bundle sha256>`."""
    return batch_id_of(f"fb-{hardware_rev}-{day:%Y%m%d}-{bundle_sha256[:BATCH_SHA_HEX_CHARS]}.parquet")


def feedback_path(
    landing_root: str | Path, hardware_rev: str, day: dt.date, bundle_sha256: str, upload_day: dt.date
) -> str | Path:
    """Where a revision-day feedback batch lands: `<landing>/edge_feedback/date=<upload_day>/<batch_id>.parquet`.

    Uploads are keyed by the UTC day they are uploaded (not the day their events happened), so the
    platform's sensor lists only the latest days, whatever the history.
    """
    name = f"{batch_id(hardware_rev, day, bundle_sha256)}.parquet"
    return landing_join(landing_root, FEEDBACK_DIR, f"date={upload_day.isoformat()}", name)


def next_telemetry_day(landing_root: str | Path, today: dt.date | None = None) -> dt.date:
    """The day after the latest `telemetry/date=YYYY-MM-DD` folder under `landing_root`, else `today`
    (default: the UTC date now), so a deployment continues the fleet's history rather than rewriting it."""
    days = []
    for name in folder_names(landing_join(landing_root, TELEMETRY_DIR)):
        if not name.startswith("date="):
            continue
        try:
            days.append(dt.date.fromisoformat(name.removeprefix("date=")))
        except ValueError:
            continue
    if days:
        return max(days) + dt.timedelta(days=1)
    return today if today is not None else dt.datetime.now(dt.UTC).date()


def _list_column(values: np.ndarray) -> pa.ListArray:
    """A float32 [N, K] array as a list<float32> column of N lists of K values."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    offsets = pa.array(np.arange(values.shape[0] + 1, dtype=np.int32) * values.shape[1])
    return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1), type=pa.float32()))


def _score_one_window_at_a_time(
    runtime: _DeviceRuntime, imu: np.ndarray, speed_kph: np.ndarray, clock_ns: Callable[[], int]
) -> tuple[np.ndarray, np.ndarray]:
    """Scores [N, classes] and the wall time of each single-window inference [N] in ms: a device
    scores each trigger as it happens, so latency is that of a batch of one."""
    count = imu.shape[0]
    scores = np.empty((count, len(runtime.class_names)), dtype=np.float32)
    inference_ms = np.empty(count, dtype=np.float32)
    predict = runtime.session.predict_proba
    for row in range(count):
        started = clock_ns()
        scores[row] = predict(imu[row : row + 1], speed_kph[row : row + 1])[0]
        inference_ms[row] = (clock_ns() - started) / 1e6
    return scores, inference_ms


def deploy_bundle(
    bundle_path: str | Path,
    public_key_path: str | Path,
    landing_root: str | Path,
    start: dt.date,
    days: int,
    scenario: str = "none",
    seed: int = 7,
    devices: int = 70,
    events_per_device_day: float = 40.0,
    clock_ns: Callable[[], int] = time.perf_counter_ns,
    upload_day: dt.date | None = None,
) -> DeploySummary:
    """Run a bundle on the scenario's fleet for `days` days from `start`; write its uploads.

    The bundle is verified and its model admitted by the fleet's device profiles first (`DeviceRefusal`
    before anything is written). Writes, atomically,
    one feedback batch per hardware revision and day under `<landing_root>/edge_feedback/` (`FEEDBACK_SCHEMA`)
    and one telemetry upload per device-day with events under `<landing_root>/telemetry/` with null
    labels and the same events. `clock_ns` times each inference (inject a fake clock for
    byte-identical reruns; everything else already is). Feedback is keyed by `upload_day` (default:
    the UTC date now), the day the uploads reach the platform.
    """
    if days < 0 or events_per_device_day < 0:
        raise ValueError("days and events_per_device_day must not be negative")
    bundle = load_bundle_on_device(bundle_path, public_key_path)
    fleet = scenario_fleet(scenario, devices, seed)
    runtime = _DeviceRuntime(bundle, fleet)
    telemetry_dir = landing_join(landing_root, TELEMETRY_DIR)
    uploaded_on = upload_day or dt.datetime.now(dt.UTC).date()
    manifest = bundle.manifest
    feedback_files: list[Path] = []
    telemetry_files: list[Path] = []
    events = reviewed = correct = review_errors = 0
    class_counts = dict.fromkeys(HARSH_EVENT_CLASSES, 0)
    latencies_ms: list[np.ndarray] = []
    for day in (start + dt.timedelta(days=offset) for offset in range(days)):
        batches: dict[str, list[pa.Table]] = {}
        for device in fleet.devices:
            rng = np.random.default_rng([seed, _DEPLOY_STREAM, device.index, day.toordinal()])
            upload = simulate_device_day(
                device, day, rng, events_per_device_day=events_per_device_day, season=fleet.season
            )
            table = upload.table
            count = table.num_rows
            if count == 0:
                continue
            label_index = table.schema.get_field_index("label")
            table = table.set_column(label_index, table.schema.field("label"), pa.nulls(count, pa.string()))
            telemetry_files.append(write_parquet_atomically(table, upload_path(telemetry_dir, device, day)))

            imu = imu_windows(table.column("imu"))
            speed_kph = table.column("speed_kph").to_numpy()
            scores, inference_ms = _score_one_window_at_a_time(runtime, imu, speed_kph, clock_ns)
            predicted = runtime.decide(scores)
            review = review_deployed_events(upload.true_class, predicted != runtime.fallback_class, rng)
            batches.setdefault(device.hardware_rev, []).append(
                pa.table(
                    {
                        "event_id": table.column("event_id"),
                        "device_id": table.column("device_id"),
                        "hardware_rev": table.column("hardware_rev"),
                        "model_version": pa.array([manifest.model_version] * count, pa.string()),
                        "bundle_sha256": pa.array([bundle.bundle_sha256] * count, pa.string()),
                        "ts": table.column("ts"),
                        "speed_kph": table.column("speed_kph"),
                        "imu": table.column("imu"),
                        "scores": _list_column(scores),
                        "predicted_label": pa.array(predicted.tolist(), pa.string()),
                        "inference_ms": pa.array(inference_ms, pa.float32()),
                        "review_label": pa.array(review.tolist(), pa.string()),
                    },
                    schema=FEEDBACK_SCHEMA,
                )
            )
            events += count
            is_reviewed = np.array([label is not None for label in review], dtype=bool)
            reviewed += int(is_reviewed.sum())
            review_errors += int(np.sum(is_reviewed & (review != upload.true_class)))
            correct += int(np.sum(predicted == upload.true_class))
            latencies_ms.append(inference_ms)
            for name in class_counts:
                class_counts[name] += int(np.count_nonzero(upload.true_class == name))
        for hardware_rev, tables in sorted(batches.items()):
            if tables:
                path = feedback_path(landing_root, hardware_rev, day, bundle.bundle_sha256, uploaded_on)
                feedback_files.append(write_parquet_atomically(pa.concat_tables(tables), path))
    all_latencies_ms = np.concatenate(latencies_ms) if latencies_ms else np.zeros(1)
    return DeploySummary(
        model_version=manifest.model_version,
        bundle_sha256=bundle.bundle_sha256,
        scenario=scenario,
        start=start,
        days=days,
        devices_by_revision=fleet.devices_by_revision(),
        feedback_files=tuple(feedback_files),
        telemetry_files=tuple(telemetry_files),
        events=events,
        reviewed=reviewed,
        correct_predictions=correct,
        review_errors=review_errors,
        class_counts=class_counts,
        inference_p50_ms=float(np.percentile(all_latencies_ms, 50)),
        inference_p99_ms=float(np.percentile(all_latencies_ms, 99)),
    )


def per_class_f1(
    true_class: np.ndarray, predicted: np.ndarray, class_names: Sequence[str]
) -> dict[str, float]:
    """F1 of each class that occurs in `true_class` (a class absent from the traffic has no F1)."""
    figures = {}
    for name in class_names:
        actual = true_class == name
        support = int(actual.sum())
        if support == 0:
            continue
        decided = predicted == name
        true_positives = int(np.sum(actual & decided))
        figures[name] = 2 * true_positives / (support + int(decided.sum()))
    return figures


def macro_f1(true_class: np.ndarray, predicted: np.ndarray, class_names: Sequence[str]) -> float:
    """Mean F1 over the classes that occur in `true_class` (as the platform's evaluation averages)."""
    figures = per_class_f1(true_class, predicted, class_names)
    return float(np.mean(list(figures.values()))) if figures else 0.0


def evaluate_bundle_on_fleet(
    bundle_path: str | Path,
    public_key_path: str | Path,
    day: dt.date | str,
    scenario: str,
    seed: int,
    devices: int,
    events_per_device_day: float = 40.0,
) -> FleetEvaluation:
    """Macro-F1 of a bundle's decisions on a fresh day of the scenario's fleet, against true classes.

    The bundle is verified and run as the devices run it (its model on one onnxruntime thread, the
    manifest's decision rule); the day's traffic comes from its own random stream, so it is never
    traffic a deployment or the telemetry command uploaded (and so never training data).
    """
    day = dt.date.fromisoformat(day) if isinstance(day, str) else day
    bundle = load_bundle_on_device(bundle_path, public_key_path)
    fleet = scenario_fleet(scenario, devices, seed)
    runtime = _DeviceRuntime(bundle, fleet)
    truths, decisions, revisions = [], [], []
    for device in fleet.devices:
        rng = np.random.default_rng([seed, _EVALUATION_STREAM, device.index, day.toordinal()])
        upload = simulate_device_day(
            device, day, rng, events_per_device_day=events_per_device_day, season=fleet.season
        )
        if upload.table.num_rows == 0:
            continue
        imu = imu_windows(upload.table.column("imu"))
        scores = runtime.session.predict_proba(imu, upload.table.column("speed_kph").to_numpy())
        truths.append(upload.true_class)
        decisions.append(runtime.decide(scores))
        revisions.append(np.full(upload.table.num_rows, device.hardware_rev))
    if not truths:
        raise ValueError("the fleet triggered no events to evaluate on (no devices, or no events per day)")
    truth, decided, revision = np.concatenate(truths), np.concatenate(decisions), np.concatenate(revisions)
    class_names = bundle.manifest.class_names
    by_revision = {
        name: macro_f1(truth[revision == name], decided[revision == name], class_names)
        for name in sorted(set(revision.tolist()))
    }
    return FleetEvaluation(
        macro_f1=macro_f1(truth, decided, class_names),
        per_class_f1=per_class_f1(truth, decided, class_names),
        windows=int(truth.size),
        by_revision=by_revision,
        scenario=scenario,
        day=day,
        model_version=bundle.manifest.model_version,
        bundle_sha256=bundle.bundle_sha256,
    )
