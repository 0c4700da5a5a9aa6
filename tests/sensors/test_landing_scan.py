import datetime as dt
import json
import time
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from resources.upload_listing import LOCAL_SETTLE_NS as SETTLE_NS
from resources.upload_listing import ListedUpload, lister_for
from sensors import landing_scan
from sensors.landing_scan import scan_new_uploads

SECOND_NS = 1_000_000_000
FAR_FUTURE_NS = time.time_ns() + 3600 * SECOND_NS  # files written by the test are long settled by then
TODAY = f"date={dt.datetime.now(dt.timezone.utc).date()}"


def land(store_root, name: str, data: bytes = b"x", day: str = TODAY) -> str:
    """A whole upload under today's prefix: renamed into place locally, one PUT on S3."""
    return store_root.write(store_root.join(day, name), data)


class Listing:
    """A simulated store: lists what it is given, as (name, arrival_ns, version) under today's prefix."""

    settle_ns = SETTLE_NS

    def __init__(self, files):
        self.files = files

    def list_uploads(self, since_day):
        return [ListedUpload(f"{TODAY}/{name}", arrival_ns, str(version)) for name, arrival_ns, version in self.files]

    def list_uploads_after(self, after_key):
        listed = sorted(self.list_uploads(None))
        return [upload for upload in listed if after_key is None or upload.key > after_key]


def names(result) -> list[str]:
    return [listed.key.rsplit("/", 1)[-1] for listed in result.new_files]


def cursor_recent(cursor: str) -> dict:
    return json.loads(cursor)["recent"]


def test_only_complete_parquet_uploads_count_and_are_listed_oldest_first(store_root):
    land(store_root, "b.parquet")
    land(store_root, "a.parquet")
    for name in (".c.parquet.1234.tmp", ".hidden.parquet", "notes.txt", "deeper/nested.parquet"):
        store_root.write(store_root.join(TODAY, name), b"x")
    store_root.write(store_root.join("date=not-a-day", "lost.parquet"), b"x")
    if store_root.kind == "local":
        day = Path(store_root.uri, TODAY)
        (day / "folder.parquet").mkdir()
        (day / "link.parquet").symlink_to(day / "b.parquet")

    result = scan_new_uploads(lister_for(store_root.uri), None, time.time_ns(), limit=100)

    assert sorted(names(result)) == ["a.parquet", "b.parquet"]
    arrivals = [listed.arrival_ns for listed in result.new_files]
    assert arrivals == sorted(arrivals)
    assert result.backlog == 0


def test_a_missing_directory_is_an_empty_scan(store_root):
    result = scan_new_uploads(lister_for(store_root.join("nowhere")), None, time.time_ns(), limit=10)
    assert result.new_files == [] and json.loads(result.next_cursor)["recent"] == {}


def test_seen_files_are_not_reported_again_but_new_ones_and_re_uploads_are(store_root):
    land(store_root, "a.parquet")
    land(store_root, "b.parquet")
    first = scan_new_uploads(lister_for(store_root.uri), None, time.time_ns(), limit=100)
    assert sorted(names(first)) == ["a.parquet", "b.parquet"]

    assert names(scan_new_uploads(lister_for(store_root.uri), first.next_cursor, time.time_ns(), limit=100)) == []

    land(store_root, "c.parquet")
    land(store_root, "a.parquet", b"a second version")  # same name, new inode and ctime
    third = scan_new_uploads(lister_for(store_root.uri), first.next_cursor, time.time_ns(), limit=100)
    assert sorted(names(third)) == ["a.parquet", "c.parquet"]
    assert names(scan_new_uploads(lister_for(store_root.uri), third.next_cursor, time.time_ns(), limit=100)) == []


def test_a_rename_that_lands_during_a_scan_is_found_by_the_next_one(store_root):
    land(store_root, "before.parquet")

    lister = lister_for(store_root.uri)

    class ListingThatMissesAConcurrentUpload:
        settle_ns = lister.settle_ns

        def list_uploads(self, since_day):
            listed = list(lister.list_uploads(since_day))
            land(store_root, "during.parquet")  # landed after the listing was read
            return listed

        def list_uploads_after(self, after_key):
            return lister.list_uploads_after(after_key)

    first = scan_new_uploads(ListingThatMissesAConcurrentUpload(), None, time.time_ns(), 100)
    assert names(first) == ["before.parquet"]
    assert names(scan_new_uploads(lister_for(store_root.uri), first.next_cursor, time.time_ns(), 100)) == ["during.parquet"]


def test_a_missed_file_with_a_ctime_below_one_the_scan_saw_is_not_lost():
    # The coarse kernel clock and directory order let a scan see B (ctime t+4 ms) but miss A (ctime t).
    t = 50 * SECOND_NS
    first = scan_new_uploads(Listing([("b.parquet", t + 4_000_000, 2)]), None, t, 10)
    assert names(first) == ["b.parquet"]
    assert json.loads(first.next_cursor)["watermark_ns"] <= t - SETTLE_NS

    both = [("a.parquet", t, 1), ("b.parquet", t + 4_000_000, 2)]
    second = scan_new_uploads(Listing(both), first.next_cursor, t + SECOND_NS, 10)
    assert names(second) == ["a.parquet"]


def test_files_sharing_a_ctime_beyond_the_limit_wait_for_the_next_scan():
    t = 50 * SECOND_NS
    listed = [(f"f{i}.parquet", t, i) for i in range(5)]
    cursor, seen = None, []
    for _ in range(3):
        result = scan_new_uploads(Listing(listed), cursor, t + 10 * SECOND_NS, 2)
        seen += names(result)
        cursor = result.next_cursor
    assert seen == [f"f{i}.parquet" for i in range(5)]


def test_more_new_files_than_the_limit_are_returned_over_several_scans(store_root):
    for i in range(7):
        land(store_root, f"u{i}.parquet")
    cursor, batches = None, []
    for _ in range(4):
        result = scan_new_uploads(lister_for(store_root.uri), cursor, time.time_ns(), limit=3)
        batches.append(names(result))
        cursor = result.next_cursor
    assert [len(batch) for batch in batches] == [3, 3, 1, 0]
    assert sorted(sum(batches, [])) == [f"u{i}.parquet" for i in range(7)]


def test_cursor_after_a_prefix_leaves_the_rest_for_the_next_scan(store_root):
    for i in range(4):
        land(store_root, f"u{i}.parquet")
    result = scan_new_uploads(lister_for(store_root.uri), None, time.time_ns(), limit=10)
    assert len(result.new_files) == 4

    rest = scan_new_uploads(lister_for(store_root.uri), result.cursor_after(1), time.time_ns(), limit=10)

    assert rest.new_files == result.new_files[1:]
    with pytest.raises(ValueError):
        result.cursor_after(5)


def test_the_cursor_forgets_names_once_they_are_older_than_the_settle_window(store_root):
    for i in range(50):
        land(store_root, f"u{i}.parquet")
    fresh = scan_new_uploads(lister_for(store_root.uri), None, time.time_ns(), limit=100)
    assert len(cursor_recent(fresh.next_cursor)) == 50  # just landed: kept by name

    settled = scan_new_uploads(lister_for(store_root.uri), fresh.next_cursor, FAR_FUTURE_NS, limit=100)

    assert settled.new_files == []
    assert cursor_recent(settled.next_cursor) == {}
    assert len(settled.next_cursor) < 60
    assert names(scan_new_uploads(lister_for(store_root.uri), settled.next_cursor, FAR_FUTURE_NS, limit=100)) == []


def test_a_clock_that_steps_back_does_not_report_seen_files_again(store_root):
    land(store_root, "a.parquet")
    first = scan_new_uploads(lister_for(store_root.uri), None, FAR_FUTURE_NS, limit=10)
    assert names(scan_new_uploads(lister_for(store_root.uri), first.next_cursor, time.time_ns() - 3600 * SECOND_NS, limit=10)) == []


@pytest.mark.parametrize("cursor", ["not json", "{}", '{"watermark_ns": 1}', '{"watermark_ns": 1, "recent": {"a": 3}}'])
def test_a_foreign_cursor_is_refused_rather_than_misread(store_root, cursor):
    with pytest.raises(ValueError, match="not a landing-scan cursor"):
        scan_new_uploads(lister_for(store_root.uri), cursor, time.time_ns(), limit=10)


def day_prefix(days_ago: int) -> str:
    return f"date={dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days_ago)}"


class CountingLister:
    """A real lister that counts what each kind of listing yields: the sweep's, and the arrival scan's."""

    def __init__(self, lister):
        self.lister = lister
        self.settle_ns = lister.settle_ns
        self.swept = 0
        self.listed_days: list = []

    def list_uploads(self, since_day):
        self.listed_days.append(since_day)
        return self.lister.list_uploads(since_day)

    def list_uploads_after(self, after_key):
        for listed in self.lister.list_uploads_after(after_key):
            self.swept += 1
            yield listed


def test_uploads_are_listed_in_key_order_from_any_key_alike_on_both_stores(store_root):
    old, older = day_prefix(3), day_prefix(4)
    loose_day = f"{old}.parquet"
    keys = [f"{old}/b.parquet", f"{old}/a.parquet", f"{older}/c.parquet", "a.parquet", "z.parquet", loose_day]
    for key in keys:
        store_root.write(store_root.join(key), b"x")
    store_root.write(store_root.join(old, ".tmp.parquet"), b"x")
    lister = lister_for(store_root.uri)

    everything = [listed.key for listed in lister.list_uploads_after(None)]

    # Where a loose `date=<day>.parquet` falls beside that day's folder is the store's own order (S3 sorts
    # by bytes, SeaweedFS walks folders): what a sweep needs is that resuming after any key is consistent.
    assert sorted(everything) == sorted(keys)
    assert [key for key in everything if key != loose_day] == sorted(set(keys) - {loose_day})
    for i, key in enumerate(everything):
        assert [listed.key for listed in lister.list_uploads_after(key)] == everything[i + 1 :]
    after_a_missing_key = [listed.key for listed in lister.list_uploads_after(f"{old}/aa.parquet")]
    assert after_a_missing_key == everything[everything.index(f"{old}/b.parquet") :]


def test_a_fresh_cursor_drains_a_backlog_in_key_order_listing_each_upload_once(store_root):
    keys = [f"{day_prefix(days_ago)}/u{i}.parquet" for days_ago in (9, 5, 2) for i in range(5)]
    for key in reversed(keys):  # arrival order is the reverse of key order
        land(store_root, key.rsplit("/", 1)[1], day=key.split("/")[0])
    lister = CountingLister(lister_for(store_root.uri))

    cursor, per_tick, sizes = None, [], []
    for _ in range(6):
        result = scan_new_uploads(lister, cursor, FAR_FUTURE_NS, limit=4)  # everything has settled: a backlog
        per_tick.append([listed.key for listed in result.new_files])
        cursor = result.next_cursor
        sizes.append(len(cursor))

    assert [len(keys) for keys in per_tick] == [4, 4, 4, 3, 0, 0]
    assert [key for tick in per_tick for key in tick] == keys  # each once, in key order
    assert lister.swept == len(keys)  # no upload of the backlog is listed twice
    assert all(day >= dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1) for day in lister.listed_days)
    assert max(sizes) < 200 and "sweep" not in json.loads(cursor)


def test_uploads_copied_in_under_old_days_are_swept_and_todays_are_scanned_by_arrival(store_root):
    old_keys = [f"{day_prefix(days_ago)}/old-{i}.parquet" for days_ago in (30, 3) for i in range(3)]
    for key in old_keys:  # a restored landing zone: old days, today's arrival
        land(store_root, key.rsplit("/", 1)[1], day=key.split("/")[0])
    for name in ("new-1.parquet", "new-0.parquet"):
        land(store_root, name)
    lister = CountingLister(lister_for(store_root.uri))
    # The first scan's settle horizon at the first arrival: every upload arrived after it.
    now_ns = min(listed.arrival_ns for listed in lister.list_uploads_after(None)) + lister.settle_ns

    cursor, reported, sweeping = None, [], []
    for _ in range(6):
        result = scan_new_uploads(lister, cursor, now_ns, limit=4)
        reported += [listed.key for listed in result.new_files]
        sweeping.append(result.sweeping)
        cursor = result.next_cursor

    assert reported[:6] == sorted(old_keys)  # the sweep's, by key
    assert sorted(reported[6:]) == [f"{TODAY}/new-0.parquet", f"{TODAY}/new-1.parquet"]  # the arrival scan's
    assert sweeping == [True, False, False, False, False, False]
    assert all(day >= dt.datetime.now(dt.UTC).date() - dt.timedelta(days=2) for day in lister.listed_days)


def test_a_tick_stopped_inside_the_sweep_resumes_after_the_last_upload_it_processed():
    t = 50 * SECOND_NS
    listing = Listing([(f"f{i}.parquet", t, i) for i in range(5)])
    first = scan_new_uploads(listing, None, t + 10 * SECOND_NS, limit=3)
    assert names(first) == ["f0.parquet", "f1.parquet", "f2.parquet"] and first.sweeping

    resumed = scan_new_uploads(listing, first.cursor_after(1), t + 11 * SECOND_NS, limit=10)
    assert first.sweeping_after(1) and not resumed.sweeping
    assert names(resumed) == ["f1.parquet", "f2.parquet", "f3.parquet", "f4.parquet"]
    from_the_start = scan_new_uploads(listing, first.cursor_after(0), t + 11 * SECOND_NS, limit=10)
    assert names(from_the_start)[0] == "f0.parquet"
    assert names(scan_new_uploads(listing, resumed.next_cursor, t + 12 * SECOND_NS, limit=10)) == []


def test_the_sweep_lists_a_bounded_number_of_keys_per_tick_however_few_it_takes(monkeypatch):
    monkeypatch.setattr(landing_scan, "SWEEP_KEYS_PER_TICK", 3)
    t = 50 * SECOND_NS
    settled = [(f"f{i}.parquet", t, i) for i in range(4)]
    # Arrived after the first scan's horizon: the arrival scan's.
    fresh = [(f"g{i}.parquet", t + 100 * SECOND_NS, 10 + i) for i in range(4)]
    listing = Listing(settled + fresh)

    cursor, per_tick, sweeping = None, [], []
    for _ in range(4):
        result = scan_new_uploads(listing, cursor, t + 100 * SECOND_NS + SETTLE_NS, limit=100)
        per_tick.append(names(result))
        sweeping.append(result.sweeping)
        cursor = result.next_cursor

    # The arrival scan reports the fresh uploads at once; the sweep walks three keys a tick.
    assert per_tick[0] == ["f0.parquet", "f1.parquet", "f2.parquet"] + [f"g{i}.parquet" for i in range(4)]
    assert per_tick[1:] == [["f3.parquet"], [], []]
    assert sweeping == [True, True, False, False]


GRAIN_NS = 4_000_000
"""The kernel stamps ctime from a coarse clock: up to one tick behind the wall clock, often equal."""
NAMES = ("a.parquet", "b.parquet", "c.parquet", "d.parquet")
STEPS_NS = (0, 1_000_000, GRAIN_NS, 500_000_000, SETTLE_NS - 1, SETTLE_NS + 1, 5 * SECOND_NS)


class LandingDirectoryRace(RuleBasedStateMachine):
    """Devices upload, re-upload and get quarantined while scans run, with uploads landing mid-scan.

    Every version of a file is (name, ctime, inode). No version is reported twice, and every version
    still in the directory at the end has been reported once the scans catch up.
    """

    def __init__(self):
        super().__init__()
        self.clock_ns = 1_700_000_000 * SECOND_NS
        self.files: dict[str, tuple[int, int]] = {}
        self.next_inode = 1
        self.cursor: str | None = None
        self.reported: set[tuple[str, int, int]] = set()

    def _ctime_now(self) -> int:
        return self.clock_ns - self.clock_ns % GRAIN_NS

    def _write(self, name: str) -> None:
        self.files[name] = (self._ctime_now(), self.next_inode)
        self.next_inode += 1

    def _scan(self, listing: dict[str, tuple[int, int]], now_ns: int, limit: int) -> int:
        listed = Listing([(name, ctime, inode) for name, (ctime, inode) in listing.items()])
        result = scan_new_uploads(listed, self.cursor, now_ns, limit)
        for name in names(result):
            version = (name, *listing[name])
            assert version not in self.reported, f"{version} reported twice"
            self.reported.add(version)
        self.cursor = result.next_cursor
        return len(result.new_files)

    @rule(step_ns=st.sampled_from(STEPS_NS))
    def time_passes(self, step_ns):
        self.clock_ns += step_ns

    @rule(name=st.sampled_from(NAMES))
    def upload(self, name):
        self._write(name)

    @precondition(lambda self: self.files)
    @rule(data=st.data())
    def quarantine(self, data):
        del self.files[data.draw(st.sampled_from(sorted(self.files)))]

    @rule(
        limit=st.integers(1, 3),
        during=st.lists(st.tuples(st.sampled_from(NAMES), st.booleans(), st.sampled_from((0, 1_000_000, GRAIN_NS))), max_size=3),
    )
    def scan_while_uploads_land(self, limit, during):
        started_ns = self.clock_ns
        listing = dict(self.files)
        for name, seen_by_the_scan, delay_ns in during:
            self.clock_ns += delay_ns
            self._write(name)
            if seen_by_the_scan:
                listing[name] = self.files[name]
        self._scan(listing, started_ns, limit)

    @invariant()
    def the_cursor_only_remembers_recent_names(self):
        if self.cursor is not None:
            state = json.loads(self.cursor)
            assert all(ctime >= state["watermark_ns"] for ctime, _ in state["recent"].values())

    def teardown(self):
        self.clock_ns += SETTLE_NS + SECOND_NS
        for _ in range(len(self.files) + 2):
            if self._scan(dict(self.files), self.clock_ns, limit=2) == 0:
                break
        missed = {(name, *version) for name, version in self.files.items()} - self.reported
        assert not missed, f"never reported: {missed}"
        self._scan(dict(self.files), self.clock_ns + SECOND_NS, limit=2)
        assert cursor_recent(self.cursor) == {}  # settled files are remembered by the watermark alone


LandingDirectoryRace.TestCase.settings = settings(
    max_examples=300, stateful_step_count=30, deadline=None, derandomize=True, database=None
)
test_no_upload_is_skipped_or_reported_twice = LandingDirectoryRace.TestCase
