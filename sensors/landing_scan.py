"""A cursor-based scan of one landing source: which complete uploads are new since the last tick.

The store lists each upload with its arrival on the store's own clock (ctime on POSIX, which a rename
into place sets; LastModified on S3, set by the server) and a version of its bytes (inode; ETag). The
arrival is the scan's watermark, so the same code serves a directory and an object store.

The cursor is JSON `{"watermark_ns": int, "recent": {key: [arrival_ns, version]}}`, with
`"sweep": {"below_ns": int, "after": key}` while a sweep runs (below). A listed upload is new to the
arrival scan when its arrival is at or above the watermark and `recent` does not hold that exact
version under its key. Everything below the watermark counts as seen, so nothing already processed is read,
hashed or looked up elsewhere.

Uploads are keyed by their UTC upload day (`date=YYYY-MM-DD/<name>.parquet`), and the scan asks the
store only for the days from one day before its watermark's day: a tick lists what arrived lately,
never the history, so it costs O(new + the last day's uploads) however many uploads were processed
before. The day of the watermark lags the store's clock by at most the settle window, and the extra
day covers an uploader whose clock is up to a day off. An upload keyed more than a day behind its
arrival is not seen: the uploader contract forbids it (the upload gateway assigns the day).

An upload that lands while a scan runs may be missed by that scan and still carry an arrival a little
below uploads the scan did see (listing order is arbitrary, the kernel stamps ctime from a coarse
clock, and S3 stamps a multipart upload with its start). So the watermark never moves past `scan start
- settle window` (the lister's `settle_ns`): an upload complete before that instant was visible to the
scan, a later one is above the watermark and found by the next tick. Processed uploads at or above the
new watermark stay in `recent` so they are not reported again; the set stays small because the
watermark follows the settle horizon on every tick, idle ones included: it holds the uploads
processed within the last settle window, at most `limit` a tick over the ticks of one window (about
2,000 uploads, 190 kB, on S3 with the sensor's defaults during a burst), whatever the zone holds.

A fresh cursor faces whatever the landing zone already holds, possibly months of uploads, some copied
in (a restored or migrated zone) with today's arrival under days long past. Scanning that backlog by
arrival would list all of it on every tick until it is drained, and would lose what is keyed more than
a day behind its arrival once the watermark rises. So the first scan splits the uploads at its settle
horizon H. The arrival scan starts with its watermark at H and owns the uploads that arrived at H or
later and are keyed from day(H) - 1 on (the days it lists). Every other upload predates the cursor
and belongs to a *sweep*, which walks the whole source in the store's key order (`list_uploads_after`,
a thousand keys a request on S3), `limit` uploads a tick, and resumes after the last key it processed: a tick lists about one page of the backlog, never the rest of it. The two never report the
same upload (the watermark never falls below H), and the cursor holds only H and that key for the
sweep. While the sweep fills a tick the arrival scan is not listed at all: its watermark waits where
it was, so what it would have found is found later, once the sweep is done or leaves room. The sweep
takes the version it lists when it passes a key; a later re-upload under a day the arrival scan lists
is the arrival scan's, one under an older day breaks the uploader contract, as above.
"""

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from resources.upload_listing import ListedUpload, UploadLister, day_of_prefix

LATENESS = dt.timedelta(days=1)
"""How far before the watermark's day a scan still lists day prefixes (uploader clock skew)."""
SWEEP_KEYS_PER_TICK = 20_000
"""At most this many listed keys a tick for the sweep (20 pages on S3), however few of them it takes."""


def _day(timestamp_ns: int) -> dt.date:
    return dt.datetime.fromtimestamp(timestamp_ns / 1e9, tz=dt.UTC).date()


@dataclass(frozen=True)
class _Sweep:
    """The key-ordered walk over the uploads that predate a fresh cursor, and where it stands."""

    below_ns: int
    after: str | None

    def takes(self, listed: ListedUpload) -> bool:
        """Whether `listed` is the sweep's rather than the arrival scan's (see the module docstring)."""
        if listed.arrival_ns < self.below_ns:
            return True
        day_folder, slash, _ = listed.key.partition("/")
        day = day_of_prefix(day_folder) if slash else None
        return day is not None and day < _day(self.below_ns) - LATENESS


@dataclass(frozen=True)
class _CursorState:
    watermark_ns: int
    recent: Mapping[str, tuple[int, str]]
    sweep: _Sweep | None = None

    @classmethod
    def fresh(cls, horizon_ns: int) -> "_CursorState":
        """A first scan's state: the arrival scan from `horizon_ns` on, and a sweep of the rest."""
        return cls(watermark_ns=horizon_ns, recent={}, sweep=_Sweep(below_ns=horizon_ns, after=None))

    @classmethod
    def parse(cls, cursor_json: str) -> "_CursorState":
        try:
            raw = json.loads(cursor_json)
            watermark_ns = int(raw["watermark_ns"])
            recent = {str(key): (int(version[0]), str(version[1])) for key, version in raw["recent"].items()}
            sweep = None
            if raw.get("sweep") is not None:
                after = raw["sweep"]["after"]
                sweep = _Sweep(
                    below_ns=int(raw["sweep"]["below_ns"]), after=None if after is None else str(after)
                )
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
            raise ValueError(f"not a landing-scan cursor: {cursor_json[:200]!r}") from error
        return cls(watermark_ns=watermark_ns, recent=recent, sweep=sweep)

    def to_json(self) -> str:
        recent = {key: [arrival_ns, version] for key, (arrival_ns, version) in sorted(self.recent.items())}
        raw: dict = {"watermark_ns": self.watermark_ns, "recent": recent}
        if self.sweep is not None:
            raw["sweep"] = {"below_ns": self.sweep.below_ns, "after": self.sweep.after}
        return json.dumps(raw, separators=(",", ":"))

    def first_day_to_list(self) -> dt.date | None:
        if self.watermark_ns < 0:
            return None
        return _day(self.watermark_ns) - LATENESS


@dataclass(frozen=True)
class ScanResult:
    """The new uploads to process this tick and the cursor to store once they are.

    `new_files` are listed uploads, keyed relative to the source (`date=YYYY-MM-DD/<name>.parquet`):
    first those of the sweep (in key order), then the arrival scan's (oldest first). `backlog`
    counts the arrival scan's new uploads left for later ticks because of the limit; `sweeping` says
    that the sweep of uploads predating the cursor goes on after this tick (how many it has left is
    not known without listing them: that is the point). When a tick stops early (a time budget),
    `cursor_after(count)` is the cursor for having processed only the first `count` of `new_files`:
    the rest are reported again by the next scan.
    """

    new_files: list[ListedUpload]
    backlog: int
    _previous: _CursorState = field(repr=False, compare=False)
    _swept: tuple[ListedUpload, ...] = field(repr=False, compare=False)
    _sweep_resume: str | None = field(repr=False, compare=False)
    _sweep_done: bool = field(repr=False, compare=False)
    _pending: tuple[ListedUpload, ...] | None = field(repr=False, compare=False)
    _horizon_ns: int = field(repr=False, compare=False)

    @property
    def next_cursor(self) -> str:
        return self.cursor_after(len(self.new_files))

    @property
    def sweeping(self) -> bool:
        return self.sweeping_after(len(self.new_files))

    def cursor_after(self, count: int) -> str:
        return self._state_after(count).to_json()

    def sweeping_after(self, count: int) -> bool:
        """Whether the sweep goes on past `cursor_after(count)`."""
        return self._state_after(count).sweep is not None

    def _state_after(self, count: int) -> _CursorState:
        if not 0 <= count <= len(self.new_files):
            raise ValueError(f"count must be within 0..{len(self.new_files)}, got {count}")
        state = self._previous
        swept = min(count, len(self._swept))
        if state.sweep is not None:
            if swept < len(self._swept):  # stopped inside this tick's share of the sweep
                if swept:
                    state = replace(state, sweep=replace(state.sweep, after=self._swept[swept - 1].key))
            elif self._sweep_done:
                state = replace(state, sweep=None)
            else:
                state = replace(state, sweep=replace(state.sweep, after=self._sweep_resume))
        if self._pending is None:  # the arrival scan was not listed: it waits where it was
            return state
        return _advance(state, self._pending, count - swept, self._horizon_ns)


def _advance(
    previous: _CursorState, pending: tuple[ListedUpload, ...], processed: int, horizon_ns: int
) -> _CursorState:
    """The cursor once the first `processed` of the sorted new uploads `pending` are done.

    The watermark may rise to the settle horizon, but not past the oldest new upload still unprocessed
    (it stays new: at the watermark and absent from `recent`), and never falls.
    """
    target = horizon_ns
    if processed < len(pending):
        target = min(target, pending[processed].arrival_ns)
    watermark_ns = max(previous.watermark_ns, target)
    recent = dict(previous.recent)
    for listed in pending[:processed]:
        recent[listed.key] = (listed.arrival_ns, listed.version)
    recent = {key: version for key, version in recent.items() if version[0] >= watermark_ns}
    return _CursorState(watermark_ns=watermark_ns, recent=recent, sweep=previous.sweep)


def _sweep_step(
    lister: UploadLister, sweep: _Sweep, limit: int
) -> tuple[list[ListedUpload], str | None, bool]:
    """Up to `limit` uploads the sweep takes, in key order after its position; the key to resume
    after once they are all processed; and whether the listing reached the end of the source."""
    taken: list[ListedUpload] = []
    resume = sweep.after
    for examined, listed in enumerate(lister.list_uploads_after(sweep.after), start=1):
        resume = listed.key
        if sweep.takes(listed):
            taken.append(listed)
        if len(taken) == limit or examined == SWEEP_KEYS_PER_TICK:
            return taken, resume, False
    return taken, resume, True


def scan_new_uploads(lister: UploadLister, cursor_json: str | None, now_ns: int, limit: int) -> ScanResult:
    """The complete uploads `lister` lists that `cursor_json` has not reported, at most `limit` of them.

    `now_ns` is the scan's start on the wall clock (`time.time_ns()` taken before listing). The
    sweep's uploads come first, in key order, then the arrival scan's, sorted by (arrival, key); the
    returned cursor advances past those returned only, so the others are reported by later scans.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    horizon_ns = now_ns - lister.settle_ns
    previous = _CursorState.parse(cursor_json) if cursor_json else _CursorState.fresh(horizon_ns)
    swept: list[ListedUpload] = []
    sweep_resume, sweep_done = None, True
    if previous.sweep is not None:
        swept, sweep_resume, sweep_done = _sweep_step(lister, previous.sweep, limit)

    pending: tuple[ListedUpload, ...] | None = None
    returned: tuple[ListedUpload, ...] = ()
    if len(swept) < limit:
        watermark_ns, recent = previous.watermark_ns, previous.recent
        # Below the watermark means seen; at or above it, seen only as this exact version.
        new = [
            listed
            for listed in lister.list_uploads(previous.first_day_to_list())
            if listed.arrival_ns >= watermark_ns
            and recent.get(listed.key) != (listed.arrival_ns, listed.version)
        ]
        pending = tuple(sorted(new, key=lambda listed: (listed.arrival_ns, listed.key)))
        returned = pending[: limit - len(swept)]
    return ScanResult(
        new_files=[*swept, *returned],
        backlog=len(pending or ()) - len(returned),
        _previous=previous,
        _swept=tuple(swept),
        _sweep_resume=sweep_resume,
        _sweep_done=sweep_done,
        _pending=pending,
        _horizon_ns=horizon_ns,
    )
