"""A cursor-based scan of one landing source: which complete uploads are new since the last tick.

The store lists each upload with its arrival on the store's own clock (ctime on POSIX, which a rename
into place sets; LastModified on S3, set by the server) and a version of its bytes (inode; ETag). The
arrival is the scan's watermark, so the same code serves a directory and an object store.

The cursor is JSON `{"watermark_ns": int, "recent": {key: [arrival_ns, version]}}`. A listed upload
is new when its arrival is at or above the watermark and `recent` does not hold that exact version
under its key. Everything below the watermark counts as seen, so nothing already processed is read,
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
watermark follows the settle horizon on every tick, idle ones included.
"""

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from resources.upload_listing import ListedUpload, UploadLister

LATENESS = dt.timedelta(days=1)
"""How far before the watermark's day a scan still lists day prefixes (uploader clock skew)."""


@dataclass(frozen=True)
class _CursorState:
    watermark_ns: int
    recent: Mapping[str, tuple[int, str]]

    @classmethod
    def parse(cls, cursor_json: str | None) -> "_CursorState":
        if not cursor_json:
            return cls(watermark_ns=-1, recent={})
        try:
            raw = json.loads(cursor_json)
            watermark_ns = int(raw["watermark_ns"])
            recent = {str(key): (int(version[0]), str(version[1])) for key, version in raw["recent"].items()}
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
            raise ValueError(f"not a landing-scan cursor: {cursor_json[:200]!r}") from error
        return cls(watermark_ns=watermark_ns, recent=recent)

    def to_json(self) -> str:
        recent = {key: [arrival_ns, version] for key, (arrival_ns, version) in sorted(self.recent.items())}
        return json.dumps({"watermark_ns": self.watermark_ns, "recent": recent}, separators=(",", ":"))

    def first_day_to_list(self) -> dt.date | None:
        if self.watermark_ns < 0:
            return None
        watermark = dt.datetime.fromtimestamp(self.watermark_ns / 1e9, tz=dt.timezone.utc)
        return (watermark - LATENESS).date()


@dataclass(frozen=True)
class ScanResult:
    """The new uploads to process this tick (oldest first) and the cursor to store once they are.

    `new_files` are listed uploads, keyed relative to the source (`date=YYYY-MM-DD/<name>.parquet`). `backlog` counts
    new uploads left for later ticks because of the limit. When a tick stops early (a time budget),
    `cursor_after(count)` is the cursor for having processed only the first `count` of `new_files`:
    the rest are reported again by the next scan.
    """

    new_files: list[ListedUpload]
    next_cursor: str
    backlog: int
    _previous: _CursorState = field(repr=False, compare=False)
    _pending: tuple[ListedUpload, ...] = field(repr=False, compare=False)
    _horizon_ns: int = field(repr=False, compare=False)

    def cursor_after(self, count: int) -> str:
        if not 0 <= count <= len(self.new_files):
            raise ValueError(f"count must be within 0..{len(self.new_files)}, got {count}")
        return _advance(self._previous, self._pending, count, self._horizon_ns).to_json()


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
    return _CursorState(watermark_ns=watermark_ns, recent=recent)


def scan_new_uploads(lister: UploadLister, cursor_json: str | None, now_ns: int, limit: int) -> ScanResult:
    """The complete uploads `lister` lists that `cursor_json` has not reported, at most `limit` of them.

    `now_ns` is the scan's start on the wall clock (`time.time_ns()` taken before listing). Uploads
    come sorted by (arrival, key); the returned cursor advances past those returned only, so the
    others are reported by the next scan.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    previous = _CursorState.parse(cursor_json)
    watermark_ns, recent = previous.watermark_ns, previous.recent
    # Below the watermark means seen; at or above it, seen only as this exact version.
    new = [
        listed
        for listed in lister.list_uploads(previous.first_day_to_list())
        if listed.arrival_ns >= watermark_ns and recent.get(listed.key) != (listed.arrival_ns, listed.version)
    ]
    pending = tuple(sorted(new, key=lambda listed: (listed.arrival_ns, listed.key)))
    horizon_ns = now_ns - lister.settle_ns
    returned = pending[:limit]
    return ScanResult(
        new_files=list(returned),
        next_cursor=_advance(previous, pending, len(returned), horizon_ns).to_json(),
        backlog=len(pending) - len(returned),
        _previous=previous,
        _pending=pending,
        _horizon_ns=horizon_ns,
    )
