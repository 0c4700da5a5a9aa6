"""Tick time of the edge-feedback sensor with 10,000 vs 100 already-processed uploads, on a local folder and on S3.

Each tick finds the same 10 new valid feedback uploads under today's prefix
(`edge_feedback/date=<today>/new-NN.parquet`) beside the processed history, which arrived at the same
rate in both cases, 100 uploads a day on the days before today (`date=<today - k days>/old-NNNNNN.parquet`,
one small valid upload's bytes under many names): 100 days of history against one. The scan lists
only the day prefixes from one day before its watermark's day, so a tick pays for the recent days
(here yesterday's 100 uploads, in both cases) and must not pay for history: goal ratio
(10,000 / 100) <= 1.2x on each store. An even spread of both histories over 100 days would instead
compare daily rates (100 uploads yesterday against 1), which a tick rightly pays for.

The stored cursor is the steady-state one: it has seen the history, and its watermark lies above it.
In operation the history is older than the settle window (2 s locally, 300 s on S3: a multipart
upload is stamped with its start); waiting 300 s is no benchmark, so the cursor comes from one scan
run with `now_ns` advanced by the lister's own settle window, which puts the watermark at the real
present, above every history upload. The new uploads are written after the store's arrival clock has
passed that watermark (S3 stamps whole seconds), so they are new to every tick.

S3 is a SeaweedFS server the benchmark starts on 127.0.0.1 and stops at the end; the history is
written by a thread pool (setup time is printed). Ticks run through the real sensor, interleaved
between stores and history sizes so machine noise hits all alike; each figure is the median of
`--ticks`. The scan alone (the listing, and the cursor filter over it) is shown apart.

    python benchmarks/sensor_tick.py [--ticks 9] [--writers 8]
"""

import argparse
import contextlib
import datetime as dt
import io
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the tests' contract-shaped feedback uploads

import dagster as dg
from dagster import DagsterInstance
from feedback_uploads import FEEDBACK_SOURCE, feedback_table
from local_and_s3 import STORES, local_and_s3_roots

from resources.filesystems import S3Settings
from resources.landing_zone import LandingZoneResource
from resources.upload_listing import s3_client, upload_day_prefix
from sensors.edge_feedback import build_edge_feedback_sensor
from sensors.landing_scan import scan_new_uploads

NEW_FILES = 10
HISTORY_SIZES = (100, 10_000)
HISTORY_PER_DAY = 100


def parquet_bytes(seed: int) -> bytes:
    sink = io.BytesIO()
    pq.write_table(feedback_table(rows=4, seed=seed), sink)
    return sink.getvalue()


def put_local(uri: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(uri), exist_ok=True)
    Path(uri).write_bytes(data)


def put_s3(uri: str, data: bytes) -> None:
    """One PUT (an S3 object appears whole), through the client the S3 lister itself uses."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    s3_client(S3Settings.from_environment()).put_object(Bucket=bucket, Key=key, Body=data)


def write_history(
    zone: LandingZoneResource, put: Callable[[str, bytes], None], history: int, writers: int
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    data = parquet_bytes(seed=0)
    uris = [
        zone.source_uri(
            FEEDBACK_SOURCE,
            upload_day_prefix(today - dt.timedelta(days=1 + i // HISTORY_PER_DAY)),
            f"old-{i:06d}.parquet",
        )
        for i in range(history)
    ]
    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(lambda uri: put(uri, data), uris))


def steady_state_cursor(zone: LandingZoneResource, history: int) -> tuple[str, int]:
    """The cursor of a sensor that has processed the history, and its watermark (the present)."""
    lister = zone.lister(FEEDBACK_SOURCE)
    present_ns = time.time_ns()
    scan = scan_new_uploads(lister, None, present_ns + lister.settle_ns, limit=history + NEW_FILES)
    assert len(scan.new_files) == history, (len(scan.new_files), history)
    return scan.next_cursor, present_ns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=9)
    parser.add_argument(
        "--writers", type=int, default=8, help="threads writing the history (<= 10: boto3's pool)"
    )
    args = parser.parse_args()

    partitions = dg.DynamicPartitionsDefinition(name="edge_feedback_batches")

    @dg.asset(partitions_def=partitions)
    def edge_feedback_probe() -> None: ...

    job = dg.define_asset_job("edge_feedback_job", [edge_feedback_probe])
    sensor = build_edge_feedback_sensor(job, partitions)
    with local_and_s3_roots("fleetml-sensor-tick-") as roots:
        puts = {"local": put_local, "s3": put_s3}
        cases = [(store, history) for store in STORES for history in HISTORY_SIZES]
        zones = {
            (store, history): LandingZoneResource(
                landing_root=f"{roots[store]}/h{history}/landing",
                quarantine_root=f"{roots[store]}/h{history}/quarantine",
            )
            for store, history in cases
        }
        setup_s: dict[str, float] = {}
        for store in STORES:
            started = time.perf_counter()
            for history in HISTORY_SIZES:
                write_history(zones[store, history], puts[store], history, args.writers)
            setup_s[store] = time.perf_counter() - started

        cursors, watermarks = {}, []
        for case in cases:
            cursors[case], watermark_ns = steady_state_cursor(zones[case], case[1])
            watermarks.append(watermark_ns)
        # New uploads must arrive at or above the watermark on the store's clock (whole seconds on S3).
        time.sleep(max(0.0, math.ceil(max(watermarks) / 1e9) + 0.05 - time.time()))
        today = upload_day_prefix(dt.datetime.now(dt.UTC).date())
        for store, history in cases:
            for i in range(NEW_FILES):
                uri = zones[store, history].source_uri(FEEDBACK_SOURCE, today, f"new-{i:02d}.parquet")
                puts[store](uri, parquet_bytes(seed=1 + i))

        instances = {case: DagsterInstance.ephemeral() for case in cases}

        def scan(case: tuple[str, int]) -> float:
            started = time.perf_counter()
            found = scan_new_uploads(
                zones[case].lister(FEEDBACK_SOURCE), cursors[case], time.time_ns(), limit=200
            )
            elapsed = time.perf_counter() - started
            assert len(found.new_files) == NEW_FILES, (case, len(found.new_files))
            return elapsed

        def tick(case: tuple[str, int]) -> float:
            context = dg.build_sensor_context(
                instance=instances[case], cursor=cursors[case], resources={"landing_zone": zones[case]}
            )
            with contextlib.redirect_stderr(io.StringIO()):  # the sensor's one-line summary per tick
                started = time.perf_counter()
                result = sensor(context)
                elapsed = time.perf_counter() - started
            assert len(result.run_requests) == NEW_FILES, (case, len(result.run_requests))
            return elapsed

        for case in cases:  # warm imports, clients and caches
            tick(case)
        ticks: dict[tuple[str, int], list[float]] = {case: [] for case in cases}
        scans: dict[tuple[str, int], list[float]] = {case: [] for case in cases}
        for _ in range(args.ticks):
            for case in cases:
                ticks[case].append(tick(case))
                scans[case].append(scan(case))

    small, large = HISTORY_SIZES
    for store in STORES:
        print(f"{store}: history written in {setup_s[store]:.1f} s")
        for history in HISTORY_SIZES:
            tick_ms = statistics.median(ticks[store, history]) * 1000
            scan_ms = statistics.median(scans[store, history]) * 1000
            print(
                f"  tick, {history:>6,} processed + {NEW_FILES} new: {tick_ms:6.1f} ms (median of {args.ticks});"
                f" the scan alone (listing): {scan_ms:5.1f} ms"
            )
        ratio = statistics.median(ticks[store, large]) / statistics.median(ticks[store, small])
        print(f"  ratio {large:,} / {small:,}: {ratio:.2f}x (goal <= 1.2x)")


if __name__ == "__main__":
    main()
