"""Peak memory and throughput of ingesting one day of telemetry, at a small day and at a large one.

A day is the telemetry job of one daily partition, run by Dagster in a child process exactly as the
code location runs it locally (`telemetry_job` of `pipelines.definitions`, local resources, in-process
executor): `raw_telemetry` reads every upload of the landing zone into the lake, `validated_telemetry`
runs the great-expectations rules and splits valid and quarantined rows, and
`harsh_event/window_features` computes the features. For each size it prints the windows per second
of the whole job and of each asset, and the child's peak RSS (its `ru_maxrss` from `wait4`, which is
its VmHWM); then the ratio peak RSS (large day) / peak RSS (small day). Streamed, memory is bounded by
one chunk of rows, not by the day: goal ratio <= 1.2x, and under 3 GB at 1,000,000 windows.

    python benchmarks/ingest_scale.py [--windows 1000000] [--small-windows 50000] [--windows-per-upload 40]
                                      [--code-root DIR] [--workdir DIR]

The day's uploads are those of a fleet: one Parquet file per device-day of `--windows-per-upload`
windows (a simulated device-day holds about 40), written the way devices write them
(`fleet_sim.landing`). Their contents are replicated, fast and seeded, from 25 device-days that
`fleet_sim` simulates: each upload copies one of them under its own device id and event ids, so every
row is valid and every event id unique. About 4.8 KB a window: 1,000,000 windows are 4.8 GB of
uploads, and the lake holds two more copies (raw and validated). Everything is written under a
temporary folder (`--workdir`, default the system's) that is removed after each size.

`--code-root` runs the ingestion of another checkout of fleetml (for instance the code before a
change: `git archive <rev> | tar -x -C DIR`), with the same generated data and the same measurement.
"""

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DAY = dt.date(2026, 11, 3)
TEMPLATE_DEVICES = 25
SEED = 7
GOAL_RATIO = 1.2
GOAL_PEAK_BYTES = 3 * 2**30
ASSET_STEPS = ("raw_telemetry", "validated_telemetry", "harsh_event__window_features")


def write_day_of_uploads(landing_root: Path, windows: int, windows_per_upload: int) -> int:
    """Land `windows` windows of DAY as uploads of `windows_per_upload` rows; return the file count."""
    sys.path.insert(0, str(REPO_ROOT))
    import pyarrow as pa

    from fleet_sim.fleet import build_fleet
    from fleet_sim.landing import parquet_bytes, write_bytes_atomically
    from fleet_sim.telemetry import TELEMETRY_DIR, device_day_rng, simulate_device_day

    fleet = build_fleet(TEMPLATE_DEVICES, SEED)
    simulated = [
        simulate_device_day(device, DAY, device_day_rng(SEED, device, DAY)).table for device in fleet
    ]
    rows = pa.concat_tables(simulated).combine_chunks()
    folder = landing_root / TELEMETRY_DIR / f"date={DAY.isoformat()}"
    files = 0
    for start in range(0, windows, windows_per_upload):
        count = min(windows_per_upload, windows - start)
        offset = (files * windows_per_upload) % (rows.num_rows - count + 1)
        upload = rows.slice(offset, count)
        device_id = f"bench-{files:07d}"
        upload = upload.set_column(
            0, "event_id", pa.array([f"{device_id}-{DAY:%Y%m%d}-{seq:05d}" for seq in range(count)])
        )
        upload = upload.set_column(1, "device_id", pa.array([device_id] * count))
        write_bytes_atomically(parquet_bytes(upload), folder / f"{device_id}-{DAY:%Y%m%d}.parquet")
        files += 1
    return files


CHILD = """
import json, sys, time
import dagster as dg
from pipelines.definitions import defs

def vm_kib(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))

job = defs.resolve_job_def("telemetry_job")
baseline_kib = vm_kib("VmRSS")
started = time.perf_counter()
instance = dg.DagsterInstance.ephemeral()
result = job.execute_in_process(partition_key=sys.argv[1], instance=instance, raise_on_error=False)
seconds = time.perf_counter() - started
steps = {
    event.step_key: event.event_specific_data.duration_ms / 1000
    for event in result.all_events
    if event.event_type_value == "STEP_SUCCESS"
}
metadata = {}
for event in result.get_asset_materialization_events():
    materialization = event.step_materialization_data.materialization
    figures = {key: value.value for key, value in materialization.metadata.items()}
    metadata["/".join(materialization.asset_key.path)] = {
        key: value for key, value in figures.items() if isinstance(value, (int, float))
    }
print(json.dumps({
    "success": result.success,
    "seconds": seconds,
    "step_seconds": steps,
    "metadata": metadata,
    "baseline_kib": baseline_kib,
    "hwm_kib": vm_kib("VmHWM"),
}))
"""


def run_day(home: Path, code_root: Path) -> dict:
    """Run the day's telemetry job in a child process; its report, with its peak RSS from `wait4`."""
    env = {
        **os.environ,
        "FLEETML_ENV": "local",
        "FLEETML_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster_home"),
        "GX_ANALYTICS_ENABLED": "false",
        "PYTHONPATH": str(code_root),
    }
    env.pop("FLEETML_LAKE_URI", None)
    (home / "dagster_home").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, DAY.isoformat()], cwd=code_root, env=env, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        lines = out.read().decode().strip().splitlines()
        if child.returncode != 0 or not lines:
            raise SystemExit(
                f"the ingestion child failed ({child.returncode}):\n{err.read().decode()[-4000:]}"
            )
    report = json.loads(lines[-1])
    report["maxrss_bytes"] = usage.ru_maxrss * 1024
    report["cpu_s"] = usage.ru_utime + usage.ru_stime
    return report


def measure(windows: int, windows_per_upload: int, code_root: Path, workdir: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="fleetml-ingest-scale-", dir=workdir) as folder:
        home = Path(folder)
        started = time.perf_counter()
        files = write_day_of_uploads(home / "landing", windows, windows_per_upload)
        generated_s = time.perf_counter() - started
        report = run_day(home, code_root)
    report |= {"windows": windows, "files": files, "generated_s": generated_s}
    return report


def mib(size_bytes: float) -> str:
    return f"{size_bytes / 2**20:,.0f} MiB"


def print_report(report: dict) -> None:
    windows = report["windows"]
    validated = report["metadata"].get("validated_telemetry", {})
    features = report["metadata"].get("harsh_event/window_features", {})
    print(
        f"{windows:>10,} windows in {report['files']:,} uploads (landed in {report['generated_s']:.0f} s): "
        f"job {'succeeded' if report['success'] else 'FAILED'} in {report['seconds']:.1f} s, "
        f"{windows / report['seconds']:,.0f} windows/s ({report['cpu_s']:.0f} CPU s); "
        f"peak RSS {mib(report['maxrss_bytes'])} (after imports {mib(report['baseline_kib'] * 1024)})",
        flush=True,
    )
    steps = ", ".join(
        f"{step} {seconds:.1f} s ({windows / seconds:,.0f}/s)"
        for step, seconds in report["step_seconds"].items()
        if step in ASSET_STEPS and seconds > 0
    )
    print(f"{'':>10} {steps}")
    print(
        f"{'':>10} rows in {validated.get('rows_in')}, valid {validated.get('rows_valid')}, "
        f"quarantined {validated.get('rows_quarantined')}, features {features.get('dagster/row_count')}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=1_000_000, help="windows of the large day")
    parser.add_argument("--small-windows", type=int, default=50_000, help="windows of the small day")
    parser.add_argument(
        "--windows-per-upload", type=int, default=40, help="rows of one upload (a device-day)"
    )
    parser.add_argument(
        "--code-root", type=Path, default=REPO_ROOT, help="the fleetml checkout whose ingestion runs"
    )
    parser.add_argument(
        "--workdir", default=None, help="where the temporary day is written (default: system temp)"
    )
    args = parser.parse_args()

    code_root = args.code_root.resolve()
    print(f"ingestion of {code_root}, day {DAY}, {args.windows_per_upload} windows per upload")
    reports = []
    for size in (args.small_windows, args.windows):
        reports.append(measure(size, args.windows_per_upload, code_root, args.workdir))
        print_report(reports[-1])
    small, large = reports
    ratio = large["maxrss_bytes"] / small["maxrss_bytes"]
    growth = large["windows"] / small["windows"]
    print(
        f"peak RSS {large['windows']:,} / {small['windows']:,} windows: {mib(large['maxrss_bytes'])} / "
        f"{mib(small['maxrss_bytes'])} = {ratio:.2f}x for {growth:g}x the windows "
        f"(goal <= {GOAL_RATIO}x, and under {mib(GOAL_PEAK_BYTES)})"
    )


if __name__ == "__main__":
    main()
