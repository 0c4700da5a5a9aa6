"""`make demo`: simulate a fleet, run the telemetry job for each day, then train, gate, promote and
bundle the harsh-event model, and verify the bundle as a device would.

Runs land in the Dagster instance under `$DAGSTER_HOME` (SQLite), so `make dev` shows them, their
asset checks and the lineage afterwards. The simulation is deterministic, so two demos print the same
data figures; a rerun replaces partitions instead of adding rows.
"""

import argparse
import datetime as dt
import time
from dataclasses import dataclass

import dagster as dg

DEMO_START = dt.date(2026, 11, 1)
DEMO_DAYS = 7
DEMO_DEVICES = 70
DEMO_SEED = 7
FAULTY_DAY_OFFSET = 3
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass(frozen=True)
class DayFigures:
    partition: str
    files_read: int
    files_quarantined: int
    rows_in: int
    rows_valid: int
    rows_quarantined: int
    feature_rows: int
    checks_passed: bool


def _metadata(result: dg.ExecuteInProcessResult, node: str, key: dg.AssetKey) -> dict:
    for event in result.asset_materializations_for_node(node):
        if event.asset_key == key:
            return {name: value.value for name, value in event.metadata.items()}
    return {}


def run_day(job: dg.JobDefinition, instance: dg.DagsterInstance, partition: str) -> DayFigures:
    from assets.features import WINDOW_FEATURES_KEY
    from assets.ingestion import raw_telemetry
    from assets.validation import VALIDATED_KEY

    result = job.execute_in_process(
        partition_key=partition,
        instance=instance,
        tags={"fleetml/trigger": "make demo"},
        run_config=QUIET,
        raise_on_error=False,
    )
    raw = _metadata(result, "raw_telemetry", raw_telemetry.key)
    validated = _metadata(result, "validated_telemetry", VALIDATED_KEY)
    features = _metadata(result, "harsh_event__window_features", WINDOW_FEATURES_KEY)
    return DayFigures(
        partition=partition,
        files_read=raw.get("files_read", 0),
        files_quarantined=raw.get("files_quarantined", 0),
        rows_in=validated.get("rows_in", 0),
        rows_valid=validated.get("rows_valid", 0),
        rows_quarantined=validated.get("rows_quarantined", 0),
        feature_rows=features.get("dagster/row_count", 0),
        checks_passed=all(check.passed for check in result.get_asset_check_evaluations()) and result.success,
    )


def print_summary(days: list[DayFigures], feature_table_dir: str, seconds: float) -> None:
    header = f"{'partition':<12}{'files':>7}{'files q.':>10}{'rows in':>9}{'valid':>8}{'rows q.':>9}{'features':>10}  gates"
    print("\n" + header)
    print("-" * len(header))
    for day in days:
        print(
            f"{day.partition:<12}{day.files_read:>7}{day.files_quarantined:>10}{day.rows_in:>9}{day.rows_valid:>8}"
            f"{day.rows_quarantined:>9}{day.feature_rows:>10}  {'passed' if day.checks_passed else 'FAILED'}"
        )
    totals = [sum(getattr(d, f) for d in days) for f in ("files_read", "files_quarantined", "rows_in", "rows_valid", "rows_quarantined", "feature_rows")]
    print("-" * len(header))
    print(f"{'total':<12}{totals[0]:>7}{totals[1]:>10}{totals[2]:>9}{totals[3]:>8}{totals[4]:>9}{totals[5]:>10}")
    print(f"\nfeature table: {feature_table_dir}/<partition>.parquet")
    print(f"partitions: {len(days)} in {seconds:.1f} s")


def train_and_bundle(job: dg.JobDefinition, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return job.execute_in_process(
        instance=instance, tags={"fleetml/trigger": "make demo"}, run_config=QUIET, raise_on_error=False
    )


def print_model_summary(result: dg.ExecuteInProcessResult, spec, refs_dir, keys_dir, seconds: float) -> bool:
    """Headline evaluation figures and the bundle, verified with the dev public key as a device would."""
    import json

    from edge_packaging.bundle import BundleRejected, verify_bundle
    from edge_packaging.profiles import load_profiles
    from edge_packaging.signing import load_public_key_file

    print("\nharsh_event model")
    for check in result.get_asset_check_evaluations():
        print(f"  gate {check.asset_key.to_user_string()}:{check.check_name}: {'passed' if check.passed else 'FAILED'}"
              f" - {check.description}")
    if not result.success:
        print("  the run stopped at a gate or failed: see it in `make dev`")
        return False
    evaluation = json.loads((refs_dir / "model_evaluation.json").read_text())
    bundle = json.loads((refs_dir / "edge_bundle.json").read_text())
    metrics, intervals = evaluation["candidate"]["metrics"], evaluation["candidate"]["intervals"]
    macro = intervals["macro_f1"]
    print(f"  test macro-F1 {metrics['macro_f1']:.3f} (95% CI {macro['low']:.3f}-{macro['high']:.3f}), "
          f"macro PR-AUC {metrics['macro_pr_auc']:.3f}, collision recall {metrics['per_class']['collision']['recall']:.3f}, "
          f"ECE {metrics['calibration']['ece']:.3f} on {metrics['n_rows']} test windows")
    profile = load_profiles()[spec.device_profiles[0]]  # verify under a real device's size limits
    try:
        verified = verify_bundle(bundle["uri"], [load_public_key_file(keys_dir / "dev-signing-key.pub.pem")], profile.bundle_limits())
        verdict = f"verified (signature {verified.signing_key_id}, {len(verified.model_bytes):,} byte model)"
    except BundleRejected as rejected:
        verdict = f"REJECTED: {rejected}"
    print(f"  bundle  {bundle['uri']}")
    print(f"  version {bundle['version']}, {bundle['size_bytes']:,} bytes, sha256 {bundle['sha256'][:16]}, signed by {bundle['signing_key']}")
    print(f"  latency one window, one thread: p50 {bundle['latency_p50_ms']:.3f} ms, p99 {bundle['latency_p99_ms']:.3f} ms; "
          f"profiles passed: {', '.join(bundle['profiles_passed'])}")
    print(f"  device check: {verdict}")
    print(f"  training to bundle in {seconds:.1f} s; open the lineage with `make dev`")
    return verdict.startswith("verified")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=DEMO_DEVICES)
    parser.add_argument("--days", type=int, default=DEMO_DAYS)
    parser.add_argument("--seed", type=int, default=DEMO_SEED)
    args = parser.parse_args()

    from assets.features import WINDOW_FEATURES_KEY
    from fleet_sim.faults import inject_upload_faults
    from fleet_sim.telemetry import simulate_telemetry
    from pipelines.definitions import defs
    from pipelines.environment import fleetml_home
    from pipelines.model_specs import HARSH_EVENT_MODEL

    started = time.perf_counter()
    landing = fleetml_home() / "landing"
    summary = simulate_telemetry(landing, DEMO_START, args.days, args.devices, args.seed)
    faults = inject_upload_faults(landing, DEMO_START + dt.timedelta(days=FAULTY_DAY_OFFSET), args.seed)
    print(f"simulated fleet: {summary.files} uploads, {summary.windows} windows over {args.days} days "
          f"from {DEMO_START}; injected {len(faults)} faulty uploads on day {FAULTY_DAY_OFFSET + 1}")

    job = defs.resolve_job_def("telemetry_job")
    partitions = [str(DEMO_START + dt.timedelta(days=offset)) for offset in range(args.days)]
    with dg.DagsterInstance.get() as instance:
        days = [run_day(job, instance, partition) for partition in partitions]
        lake = defs.resources["lake"]
        print_summary(days, lake.table_uri(WINDOW_FEATURES_KEY.path).rsplit("/", 1)[0], time.perf_counter() - started)
        if not all(day.checks_passed for day in days):
            raise SystemExit("a day failed its gates: see the run in `make dev`")
        started = time.perf_counter()
        trained = train_and_bundle(defs.resolve_job_def(f"{HARSH_EVENT_MODEL.name}_training_job"), instance)
    home = fleetml_home()
    if not print_model_summary(trained, HARSH_EVENT_MODEL, home / "refs" / HARSH_EVENT_MODEL.name, home / "keys", time.perf_counter() - started):
        raise SystemExit("the model did not reach a verified bundle")


if __name__ == "__main__":
    main()
