"""Tick time of the edge-feedback sensor with 100,000 uploads in the landing zone, on a local folder and on S3.

Two landing zones of 100,000 uploads per store (one small valid upload's bytes under many names):
"over 100 days" holds 1,000 uploads a day under the 100 days before today, "in one day" holds all
of them under today's prefix. Per store and zone:

- steady: the sensor has processed the 100,000; each tick finds 10 new uploads under today's
  prefix. The tick lists the days from yesterday on: 1,000 + 10 uploads over 100 days, the whole
  100,000 + 10 in one day (an object store cannot list by arrival: that is the cost of the day).
- cold: a fresh cursor faces the 100,000 as a backlog. Its ticks sweep them in key order, 200 a tick
  (the sensor's default limit), each listing the page after the last key processed. Real sensor ticks
  (footers read, run requests built) are timed at the start of the drain, halfway and at its end; the
  drain itself runs with the scan alone, which counts its ticks, the uploads each tick lists, the
  cursor's bytes, and checks that every upload is reported exactly once.
- burst (one day only): a sensor that kept up, then 100,000 uploads land in today's prefix within the
  settle window. They are the arrival scan's: each tick lists the day and takes the 200 oldest.

The cold cursor is the one a fresh sensor holds once every upload has settled (arrived before its
settle horizon: 2 s locally, 300 s on S3), built by a first scan with `now_ns` advanced by the
lister's settle window, as `sensor_tick.py` does; the new steady uploads are written after the store's
clock has passed the watermark. The Dagster instance is a SQLite one on disk holding the 100,000
batches as dynamic partitions, so the partition look-up is the production query. Figures are medians
of `--ticks` real ticks. No assertion on time: goal, every tick well inside the daemon's 60 s limit
(aim < 15 s on this 2-core machine), and a cursor of bounded size.

    python benchmarks/sensor_backlog.py [--uploads 100000] [--ticks 3] [--writers 10]
"""

import argparse
import contextlib
import datetime as dt
import io
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the tests' contract-shaped feedback uploads

import dagster as dg
from feedback_uploads import FEEDBACK_SOURCE, feedback_table
from local_and_s3 import STORES, local_and_s3_roots
from sensor_tick import put_local, put_s3

from resources.landing_zone import LandingZoneResource
from resources.upload_listing import ListedUpload, UploadLister, upload_day_prefix
from sensors.edge_feedback import build_edge_feedback_sensor
from sensors.landing_scan import scan_new_uploads

LIMIT = 200
"""The sensor's default `max_files_per_tick`."""
NEW_FILES = 10
DAYS = 100
TICK_LIMIT_S = 60.0
INTERVAL_NS = 30 * 1_000_000_000
"""The sensor's `minimum_interval_seconds`."""
ZONES = ("over 100 days", "in one day")


class CountingLister:
    """A lister that counts the uploads its listings yield: what a tick pays for."""

    def __init__(self, lister: UploadLister) -> None:
        self.lister = lister
        self.settle_ns = lister.settle_ns
        self.listed = 0

    def _counted(self, listing: Iterator[ListedUpload]) -> Iterator[ListedUpload]:
        for listed in listing:
            self.listed += 1
            yield listed

    def list_uploads(self, since_day: dt.date | None) -> Iterator[ListedUpload]:
        return self._counted(self.lister.list_uploads(since_day))

    def list_uploads_after(self, after_key: str | None) -> Iterator[ListedUpload]:
        return self._counted(self.lister.list_uploads_after(after_key))

    def current(self, key: str) -> ListedUpload | None:
        return self.lister.current(key)


def upload_keys(zone: str, uploads: int) -> list[tuple[str, str]]:
    """(day prefix, file name) of every upload of `zone`."""
    today = dt.datetime.now(dt.UTC).date()
    per_day = math.ceil(uploads / DAYS)
    if zone == "in one day":
        return [(upload_day_prefix(today), f"b-{i:06d}.parquet") for i in range(uploads)]
    return [
        (upload_day_prefix(today - dt.timedelta(days=1 + i // per_day)), f"b-{i:06d}.parquet")
        for i in range(uploads)
    ]


def write_uploads(
    zone: LandingZoneResource, put: Callable[[str, bytes], None], keys: list[tuple[str, str]], writers: int
) -> None:
    sink = io.BytesIO()
    pq.write_table(feedback_table(rows=1, seed=0), sink)
    data = sink.getvalue()
    uris = [zone.source_uri(FEEDBACK_SOURCE, day, name) for day, name in keys]
    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(lambda uri: put(uri, data), uris))


class Bench:
    """The real sensor, ticked against one landing zone and one on-disk Dagster instance."""

    def __init__(self, zone: LandingZoneResource, instance: dg.DagsterInstance) -> None:
        partitions = dg.DynamicPartitionsDefinition(name="edge_feedback_batches")

        @dg.asset(partitions_def=partitions)
        def edge_feedback_probe() -> None: ...

        self.sensor = build_edge_feedback_sensor(
            dg.define_asset_job("edge_feedback_job", [edge_feedback_probe]), partitions
        )
        self.zone = zone
        self.instance = instance

    def tick(self, cursor: str | None, ticks: int) -> tuple[float, dg.SensorResult]:
        """Median seconds of `ticks` ticks from the same cursor, and the last result."""
        seconds = []
        for _ in range(ticks):
            context = dg.build_sensor_context(
                instance=self.instance, cursor=cursor, resources={"landing_zone": self.zone}
            )
            with contextlib.redirect_stderr(io.StringIO()):  # the sensor's one-line summary per tick
                started = time.perf_counter()
                result = self.sensor(context)
                seconds.append(time.perf_counter() - started)
        return statistics.median(seconds), result

    def scan(self, cursor: str | None, now_ns: int | None = None, limit: int = LIMIT):
        """One scan alone (listing and cursor): seconds, uploads listed, result."""
        lister = CountingLister(self.zone.lister(FEEDBACK_SOURCE))
        started = time.perf_counter()
        result = scan_new_uploads(lister, cursor, now_ns or time.time_ns(), limit)
        return time.perf_counter() - started, lister.listed, result


def drain(bench: Bench, cursor: str, now_ns: int, expected: set[str]) -> dict:
    """Scan from `cursor` until nothing is left; every upload must be reported exactly once.

    The ticks counted are those that report uploads; one more finds that the sweep has ended."""
    reported: list[str] = []
    cursors, seconds, listed_per_tick, cursor_bytes = [], [], [], []
    while True:
        elapsed, listed, result = bench.scan(cursor, now_ns)
        if not result.new_files and not result.sweeping:  # a last tick that finds the end of the sweep
            cursor = result.next_cursor
            break
        cursors.append(cursor)
        seconds.append(elapsed)
        listed_per_tick.append(listed)
        reported += [listed.key for listed in result.new_files]
        cursor = result.next_cursor
        cursor_bytes.append(len(cursor))
    assert len(reported) == len(set(reported)), "an upload was reported twice"
    assert set(reported) == expected, f"{len(expected - set(reported))} uploads never reported"
    return {
        "ticks": len(cursors),
        "cursors": cursors,
        "final": cursor,
        "scan_s": seconds,
        "listed": listed_per_tick,
        "cursor_bytes": max(cursor_bytes),
    }


def burst_cursor_bytes(bench: Bench, cursor: str, settle_ns: int) -> tuple[int, int]:
    """The largest cursor over the ticks of one settle window of a burst, and how many ticks that is.

    The scan alone, its clock advanced by the sensor's interval a tick: what it processed within the
    settle window stays in the cursor by name, so this is where the cursor is largest."""
    started_ns, sizes = time.time_ns(), []
    for tick in range(math.ceil(settle_ns / INTERVAL_NS) + 2):
        cursor = bench.scan(cursor, started_ns + tick * INTERVAL_NS)[2].next_cursor
        sizes.append(len(cursor))
    return max(sizes), len(sizes)


def settle_past(watermark_ns: int) -> None:
    """Wait until the store's clock (whole seconds on S3) is past `watermark_ns`."""
    time.sleep(max(0.0, math.ceil(watermark_ns / 1e9) + 0.05 - time.time()))


def partition_lookups(instance: dg.DagsterInstance, batch_ids: list[str]) -> tuple[float, float]:
    """Seconds to look `batch_ids` up one by one (before) and in one query (the sensor now)."""
    started = time.perf_counter()
    for batch_id in batch_ids:
        instance.has_dynamic_partition("edge_feedback_batches", batch_id)
    one_by_one = time.perf_counter() - started
    started = time.perf_counter()
    instance.get_existing_dynamic_partitions("edge_feedback_batches", batch_ids)
    return one_by_one, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=100_000)
    parser.add_argument("--ticks", type=int, default=3)
    parser.add_argument(
        "--writers", type=int, default=10, help="threads writing uploads (<= 10: boto3's pool)"
    )
    args = parser.parse_args()
    puts = {"local": put_local, "s3": put_s3}
    figures: dict[tuple[str, str], dict] = {}
    slowest: list[tuple[float, str]] = []

    with (
        local_and_s3_roots("fleetml-sensor-backlog-") as roots,
        tempfile.TemporaryDirectory() as instance_dir,
    ):
        Path(instance_dir, "dagster.yaml").write_text("")
        instance = dg.DagsterInstance.local_temp(instance_dir)
        instance.add_dynamic_partitions("edge_feedback_batches", [f"b-{i:06d}" for i in range(args.uploads)])
        lookups = partition_lookups(instance, [f"b-{i * (args.uploads // LIMIT):06d}" for i in range(LIMIT)])

        for store in STORES:
            started = time.perf_counter()
            for zone_name in ZONES:
                zone = LandingZoneResource(
                    landing_root=f"{roots[store]}/{zone_name.replace(' ', '-')}/landing",
                    quarantine_root=f"{roots[store]}/{zone_name.replace(' ', '-')}/quarantine",
                )
                bench = Bench(zone, instance)
                keys = upload_keys(zone_name, args.uploads)
                # A sensor that kept up with an empty zone: what a burst meets.
                burst_cursor = bench.scan(None)[2].next_cursor
                write_started = time.perf_counter()
                write_uploads(zone, puts[store], keys, args.writers)
                row = figures[store, zone_name] = {"write_s": time.perf_counter() - write_started}

                if zone_name == "in one day":
                    row["burst_tick_s"], burst = bench.tick(burst_cursor, args.ticks)
                    row["burst_scan_s"], row["burst_listed"], _ = bench.scan(burst_cursor)
                    row["burst_cursor_bytes"] = len(burst.cursor)
                    assert len(burst.run_requests) == LIMIT, len(burst.run_requests)
                    row["burst_cursor_max"], row["burst_window_ticks"] = burst_cursor_bytes(
                        bench, burst_cursor, zone.lister(FEEDBACK_SOURCE).settle_ns
                    )

                lister = zone.lister(FEEDBACK_SOURCE)
                present_ns = time.time_ns()
                now_ns = present_ns + lister.settle_ns  # every upload has settled: a backlog for the sweep
                cold_cursor = scan_new_uploads(lister, None, now_ns, limit=1).cursor_after(0)
                expected = {f"{day}/{name}" for day, name in keys}
                row["drain"] = drained = drain(bench, cold_cursor, now_ns, expected)
                for label, cursor in (
                    ("first", drained["cursors"][0]),
                    ("halfway", drained["cursors"][drained["ticks"] // 2]),
                    ("last", drained["cursors"][-1]),
                ):
                    row[f"cold_{label}_s"], result = bench.tick(cursor, args.ticks)
                    assert result.run_requests, (store, zone_name, label)
                row["cold_scan_s"] = statistics.median(drained["scan_s"])

                settle_past(present_ns)
                today = upload_day_prefix(dt.datetime.now(dt.UTC).date())
                for i in range(NEW_FILES):
                    puts[store](
                        zone.source_uri(FEEDBACK_SOURCE, today, f"new-{i:02d}.parquet"), feedback_bytes(i)
                    )
                steady_cursor = drained["final"]
                row["steady_tick_s"], steady = bench.tick(steady_cursor, args.ticks)
                assert len(steady.run_requests) == NEW_FILES, len(steady.run_requests)
                row["steady_scan_s"], row["steady_listed"], _ = bench.scan(steady_cursor)
                row["steady_cursor_bytes"] = len(steady_cursor)
                row["steady_after_bytes"] = len(steady.cursor)
                for case in ("steady_tick", "cold_first", "cold_halfway", "cold_last", "burst_tick"):
                    if f"{case}_s" in row:
                        slowest.append((row[f"{case}_s"], f"{store}, {case.replace('_', ' ')}, {zone_name}"))
            print(
                f"{store}: {len(ZONES)} zones of {args.uploads:,} uploads written in {time.perf_counter() - started:.0f} s"
                " (with their measurements)",
                flush=True,
            )

    print(
        f"\nedge-feedback sensor at {args.uploads:,} uploads, {LIMIT} a tick; seconds are medians of {args.ticks} ticks"
    )
    for store in STORES:
        print(f"{store}:")
        for zone_name in ZONES:
            row = figures[store, zone_name]
            drained = row["drain"]
            footer_ms = (row["cold_first_s"] - drained["scan_s"][0]) / LIMIT * 1000
            print(
                f"  steady, {args.uploads:,} processed {zone_name} + {NEW_FILES} new: tick {row['steady_tick_s']:.2f} s,"
                f" scan alone {row['steady_scan_s']:.2f} s listing {row['steady_listed']:,} uploads;"
                f" cursor {row['steady_cursor_bytes']} B before, {row['steady_after_bytes']} B after"
            )
            print(
                f"  cold, {args.uploads:,} {zone_name}: tick at the start {row['cold_first_s']:.2f} s, halfway"
                f" {row['cold_halfway_s']:.2f} s, last {row['cold_last_s']:.2f} s (halfway / start"
                f" {row['cold_halfway_s'] / row['cold_first_s']:.2f}x); footers {footer_ms:.1f} ms an upload"
            )
            print(
                f"    drained in {drained['ticks']} ticks (+1 finding the end); scan alone {row['cold_scan_s'] * 1000:.0f} ms a tick"
                f" (max {max(drained['scan_s']):.2f} s), listing {statistics.median(drained['listed']):.0f} uploads"
                f" (max {max(drained['listed']):,}, {sum(drained['listed']):,} in all = "
                f"{sum(drained['listed']) / args.uploads:.2f}x the backlog); cursor <= {drained['cursor_bytes']} B;"
                " every upload reported once"
            )
            if "burst_tick_s" in row:
                print(
                    f"  burst, {args.uploads:,} landing {zone_name} within the settle window: tick"
                    f" {row['burst_tick_s']:.2f} s, scan alone {row['burst_scan_s']:.2f} s listing"
                    f" {row['burst_listed']:,} uploads; {math.ceil(args.uploads / LIMIT)} ticks to drain, each listing the day"
                )
                print(
                    f"    cursor {row['burst_cursor_bytes']:,} B after a tick, at most {row['burst_cursor_max']:,} B over"
                    f" the {row['burst_window_ticks']} ticks of a settle window (scan alone, clock advanced 30 s a tick)"
                )
    one_by_one, one_query = lookups
    print(
        f"partition registration, {LIMIT} batches against {args.uploads:,} partitions (SQLite on disk):"
        f" one query {one_query * 1000:.1f} ms; one look-up each {one_by_one * 1000:.0f} ms ({one_by_one / one_query:.0f}x)"
    )
    worst_s, worst = max(slowest)
    print(
        f"slowest tick: {worst_s:.2f} s ({worst}) = {worst_s / TICK_LIMIT_S:.0%} of the {TICK_LIMIT_S:.0f} s limit (aim < 15 s)"
    )


def feedback_bytes(seed: int) -> bytes:
    sink = io.BytesIO()
    pq.write_table(feedback_table(rows=1, seed=1 + seed), sink)
    return sink.getvalue()


if __name__ == "__main__":
    main()
