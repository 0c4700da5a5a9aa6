"""Tick time of the edge-feedback sensor with 10,000 vs 100 already-processed uploads in the landing zone.

Each tick finds the same 10 new valid feedback uploads beside the processed ones (the stored cursor has
seen those, and they are older than the settle window, as they are in steady operation). The sensor
must not pay for history: only one directory listing grows with it, so the ratio stays small.
Goal: ratio <= 2. Each figure is the median of several ticks, interleaved so machine noise hits both.
The listing (one `os.scandir` and one `stat` per upload, the floor of a ctime watermark) is shown apart.

    python benchmarks/sensor_tick.py [--ticks 9]
"""

import argparse
import contextlib
import io
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests" / "sensors"))  # the sensor tests' contract-shaped uploads

import dagster as dg  # noqa: E402
from dagster import DagsterInstance  # noqa: E402
from feedback_uploads import feedback_table  # noqa: E402

from fleet_sim.landing import write_parquet_atomically  # noqa: E402
from resources.landing_zone import LandingZoneResource  # noqa: E402
from sensors.edge_feedback import build_edge_feedback_sensor  # noqa: E402
from sensors.landing_scan import SETTLE_NS, list_complete_uploads, scan_new_uploads  # noqa: E402

NEW_FILES = 10
HISTORY_SIZES = (100, 10_000)
def landing_with_history(root: Path, history: int) -> LandingZoneResource:
    """A landing zone holding `history` processed uploads (one valid file's bytes under many names)."""
    zone = LandingZoneResource(landing_root=str(root / "landing"), quarantine_root=str(root / "quarantine"))
    directory = Path(zone.landing_root, "edge_feedback")
    directory.mkdir(parents=True)
    sink = io.BytesIO()
    pq.write_table(feedback_table(rows=4, seed=0), sink)
    processed_bytes = sink.getvalue()
    for i in range(history):
        (directory / f"old-{i:06d}.parquet").write_bytes(processed_bytes)
    return zone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=9)
    args = parser.parse_args()

    partitions = dg.DynamicPartitionsDefinition(name="edge_feedback_batches")

    @dg.asset(partitions_def=partitions)
    def edge_feedback_probe() -> None: ...

    job = dg.define_asset_job("edge_feedback_job", [edge_feedback_probe])
    sensor = build_edge_feedback_sensor(job, partitions)
    workdir = Path(tempfile.mkdtemp(prefix="fleetml-sensor-tick-"))
    try:
        zones = {history: landing_with_history(workdir / str(history), history) for history in HISTORY_SIZES}
        time.sleep(SETTLE_NS / 1e9 + 0.2)  # the history is older than the settle window, as in steady state
        cursors = {}
        for history, zone in zones.items():
            directory = Path(zone.landing_root, "edge_feedback")
            seen = scan_new_uploads(directory, None, time.time_ns(), limit=history)
            assert len(seen.new_files) == history
            cursors[history] = seen.next_cursor
            for i in range(NEW_FILES):
                new_upload = directory / f"new-{i:02d}.parquet"
                write_parquet_atomically(feedback_table(rows=4, seed=1 + i), new_upload)

        instances = {history: DagsterInstance.ephemeral() for history in HISTORY_SIZES}

        def listing(history: int) -> float:
            started = time.perf_counter()
            list_complete_uploads(Path(zones[history].landing_root, "edge_feedback"))
            return time.perf_counter() - started

        def tick(history: int) -> float:
            context = dg.build_sensor_context(
                instance=instances[history],
                cursor=cursors[history],
                resources={"landing_zone": zones[history]},
            )
            with contextlib.redirect_stderr(io.StringIO()):  # the sensor's one-line summary per tick
                started = time.perf_counter()
                result = sensor(context)
                elapsed = time.perf_counter() - started
            assert len(result.run_requests) == NEW_FILES, len(result.run_requests)
            return elapsed

        for history in HISTORY_SIZES:  # warm imports and caches
            tick(history)
        timings: dict[int, list[float]] = {history: [] for history in HISTORY_SIZES}
        listings: dict[int, list[float]] = {history: [] for history in HISTORY_SIZES}
        for _ in range(args.ticks):
            for history in HISTORY_SIZES:
                timings[history].append(tick(history))
                listings[history].append(listing(history))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    small, large = (statistics.median(timings[history]) for history in HISTORY_SIZES)
    for history, median_s in zip(HISTORY_SIZES, (small, large)):
        print(f"tick, {history:>6} processed + {NEW_FILES} new: {median_s * 1000:7.1f} ms", end="")
        print(f" (median of {args.ticks}), of which listing the directory:", end="")
        print(f" {statistics.median(listings[history]) * 1000:.1f} ms")
    print(f"ratio: {large / small:.2f}x (goal <= 2x)")


if __name__ == "__main__":
    main()
