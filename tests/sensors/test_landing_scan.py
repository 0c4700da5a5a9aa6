import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sensors.landing_scan import SETTLE_NS, list_complete_uploads, scan_new_uploads

SECOND_NS = 1_000_000_000
FAR_FUTURE_NS = time.time_ns() + 3600 * SECOND_NS  # files written by the test are long settled by then


def land(directory: Path, name: str, data: bytes = b"x") -> Path:
    """An atomic upload: a dot-prefixed temp file renamed into place."""
    directory.mkdir(parents=True, exist_ok=True)
    temp = directory / f".{name}.tmp"
    temp.write_bytes(data)
    os.replace(temp, directory / name)
    return directory / name


def names(result) -> list[str]:
    return [path.name for path in result.new_files]


def cursor_recent(cursor: str) -> dict:
    return json.loads(cursor)["recent"]


def test_only_complete_parquet_uploads_count_and_are_listed_oldest_first(tmp_path):
    land(tmp_path, "b.parquet")
    land(tmp_path, "a.parquet")
    (tmp_path / ".c.parquet.1234.tmp").write_bytes(b"half")
    (tmp_path / ".hidden.parquet").write_bytes(b"x")
    (tmp_path / "notes.txt").write_bytes(b"x")
    (tmp_path / "folder.parquet").mkdir()
    (tmp_path / "link.parquet").symlink_to(tmp_path / "b.parquet")

    result = scan_new_uploads(tmp_path, None, time.time_ns(), limit=100)

    assert sorted(names(result)) == ["a.parquet", "b.parquet"]
    ctimes = [path.stat().st_ctime_ns for path in result.new_files]
    assert ctimes == sorted(ctimes)
    assert result.backlog == 0


def test_a_missing_directory_is_an_empty_scan(tmp_path):
    result = scan_new_uploads(tmp_path / "nowhere", None, time.time_ns(), limit=10)
    assert result.new_files == [] and json.loads(result.next_cursor)["recent"] == {}


def test_seen_files_are_not_reported_again_but_new_ones_and_re_uploads_are(tmp_path):
    land(tmp_path, "a.parquet")
    land(tmp_path, "b.parquet")
    first = scan_new_uploads(tmp_path, None, time.time_ns(), limit=100)
    assert sorted(names(first)) == ["a.parquet", "b.parquet"]

    assert names(scan_new_uploads(tmp_path, first.next_cursor, time.time_ns(), limit=100)) == []

    land(tmp_path, "c.parquet")
    land(tmp_path, "a.parquet", b"a second version")  # same name, new inode and ctime
    third = scan_new_uploads(tmp_path, first.next_cursor, time.time_ns(), limit=100)
    assert sorted(names(third)) == ["a.parquet", "c.parquet"]
    assert names(scan_new_uploads(tmp_path, third.next_cursor, time.time_ns(), limit=100)) == []


def test_a_rename_that_lands_during_a_scan_is_found_by_the_next_one(tmp_path):
    land(tmp_path, "before.parquet")

    def listing_that_misses_a_concurrent_upload(directory: Path):
        listed = list_complete_uploads(directory)
        land(directory, "during.parquet")  # renamed into place after the directory was read
        return listed

    first = scan_new_uploads(tmp_path, None, time.time_ns(), 100, list_files=listing_that_misses_a_concurrent_upload)
    assert names(first) == ["before.parquet"]
    assert names(scan_new_uploads(tmp_path, first.next_cursor, time.time_ns(), 100)) == ["during.parquet"]


def test_a_missed_file_with_a_ctime_below_one_the_scan_saw_is_not_lost():
    # The coarse kernel clock and directory order let a scan see B (ctime t+4 ms) but miss A (ctime t).
    t = 50 * SECOND_NS
    first = scan_new_uploads(Path("d"), None, t, 10, list_files=lambda _: [("b.parquet", t + 4_000_000, 2)])
    assert names(first) == ["b.parquet"]
    assert json.loads(first.next_cursor)["watermark_ns"] <= t - SETTLE_NS

    both = [("a.parquet", t, 1), ("b.parquet", t + 4_000_000, 2)]
    second = scan_new_uploads(Path("d"), first.next_cursor, t + SECOND_NS, 10, list_files=lambda _: both)
    assert names(second) == ["a.parquet"]


def test_files_sharing_a_ctime_beyond_the_limit_wait_for_the_next_scan():
    t = 50 * SECOND_NS
    listed = [(f"f{i}.parquet", t, i) for i in range(5)]
    cursor, seen = None, []
    for _ in range(3):
        result = scan_new_uploads(Path("d"), cursor, t + 10 * SECOND_NS, 2, list_files=lambda _: listed)
        seen += names(result)
        cursor = result.next_cursor
    assert seen == [f"f{i}.parquet" for i in range(5)]


def test_more_new_files_than_the_limit_are_returned_over_several_scans(tmp_path):
    for i in range(7):
        land(tmp_path, f"u{i}.parquet")
    cursor, batches = None, []
    for _ in range(4):
        result = scan_new_uploads(tmp_path, cursor, time.time_ns(), limit=3)
        batches.append(names(result))
        cursor = result.next_cursor
    assert [len(batch) for batch in batches] == [3, 3, 1, 0]
    assert sorted(sum(batches, [])) == [f"u{i}.parquet" for i in range(7)]


def test_cursor_after_a_prefix_leaves_the_rest_for_the_next_scan(tmp_path):
    for i in range(4):
        land(tmp_path, f"u{i}.parquet")
    result = scan_new_uploads(tmp_path, None, time.time_ns(), limit=10)
    assert len(result.new_files) == 4

    rest = scan_new_uploads(tmp_path, result.cursor_after(1), time.time_ns(), limit=10)

    assert rest.new_files == result.new_files[1:]
    with pytest.raises(ValueError):
        result.cursor_after(5)


def test_the_cursor_forgets_names_once_they_are_older_than_the_settle_window(tmp_path):
    for i in range(50):
        land(tmp_path, f"u{i}.parquet")
    fresh = scan_new_uploads(tmp_path, None, time.time_ns(), limit=100)
    assert len(cursor_recent(fresh.next_cursor)) == 50  # just landed: kept by name

    settled = scan_new_uploads(tmp_path, fresh.next_cursor, FAR_FUTURE_NS, limit=100)

    assert settled.new_files == []
    assert cursor_recent(settled.next_cursor) == {}
    assert len(settled.next_cursor) < 60
    assert names(scan_new_uploads(tmp_path, settled.next_cursor, FAR_FUTURE_NS, limit=100)) == []


def test_a_clock_that_steps_back_does_not_report_seen_files_again(tmp_path):
    land(tmp_path, "a.parquet")
    first = scan_new_uploads(tmp_path, None, FAR_FUTURE_NS, limit=10)
    assert names(scan_new_uploads(tmp_path, first.next_cursor, time.time_ns() - 3600 * SECOND_NS, limit=10)) == []


@pytest.mark.parametrize("cursor", ["not json", "{}", '{"watermark_ns": 1}', '{"watermark_ns": 1, "recent": {"a": 3}}'])
def test_a_foreign_cursor_is_refused_rather_than_misread(tmp_path, cursor):
    with pytest.raises(ValueError, match="not a landing-scan cursor"):
        scan_new_uploads(tmp_path, cursor, time.time_ns(), limit=10)


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
        result = scan_new_uploads(
            Path("landing"),
            self.cursor,
            now_ns,
            limit,
            list_files=lambda _: [(name, ctime, inode) for name, (ctime, inode) in listing.items()],
        )
        for path in result.new_files:
            version = (path.name, *listing[path.name])
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
