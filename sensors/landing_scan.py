"""A cursor-based scan of one landing directory: which complete uploads are new since the last tick.

Devices write an upload to a dot-prefixed temp name and rename it into place, so a complete upload is
a `*.parquet` name not starting with ".". Renaming sets the file's ctime (Linux updates ctime on
rename, and a re-upload of the same name is a new inode with a new ctime), so ctime orders uploads by
their arrival and is the scan's watermark.

The cursor is JSON `{"watermark_ns": int, "recent": {name: [ctime_ns, inode]}}`. A listed file is new
when its ctime is at or above the watermark and `recent` does not hold that exact version (same ctime
and inode) under its name. Everything below the watermark counts as seen, so the work per tick beyond
one `os.scandir` (and the stat of each entry it lists) is proportional to the new files only: nothing
already seen is read, hashed or looked up elsewhere.

A rename that lands while a scan runs may be missed by that scan and still carry a ctime a little
below files the scan did see (directory order is arbitrary, and the kernel stamps ctime from a coarse
clock). So the watermark never moves past `scan start - SETTLE_NS`: a file renamed into place before
that instant was visible to the scan, a later one is above the watermark and found by the next tick.
Processed files at or above the new watermark stay in `recent` so they are not reported again; the
set stays small because the watermark follows the settle horizon on every tick, idle ones included.

Assumes the landing directory's filesystem stamps ctime from a clock within `SETTLE_NS` of this
host's (true for local disks; for a network filesystem the settle window must cover the clock skew).
"""

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG
from typing import NamedTuple

SETTLE_NS = 2_000_000_000
"""How far behind the scan's start the watermark stays, to catch renames that land during a scan."""

UPLOAD_SUFFIX = ".parquet"


class ListedFile(NamedTuple):
    """One complete upload as the directory listing shows it; (ctime_ns, inode) identify its version."""

    name: str
    ctime_ns: int
    inode: int


def is_complete_upload_name(name: str) -> bool:
    """Whether `name` is a finished upload rather than a dot-prefixed temp file or another file."""
    return name.endswith(UPLOAD_SUFFIX) and not name.startswith(".")


def list_complete_uploads(directory: Path) -> list[tuple[str, int, int]]:
    """(name, ctime_ns, inode) of every complete upload directly under `directory`, from one `os.scandir`.

    Only regular files count (a symlink is not an upload). This loop is the whole cost of a tick that
    finds nothing new, so it stays lean: one `stat` per listed upload, plain tuples.
    """
    listed: list[tuple[str, int, int]] = []
    append = listed.append
    try:
        # Listing through a directory descriptor makes each stat resolve the name relative to it
        # instead of walking the whole path again.
        directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return listed
    try:
        with os.scandir(directory_fd) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(".") or not name.endswith(UPLOAD_SUFFIX):
                    continue
                try:
                    stat = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # moved away (quarantined, re-uploaded) since it was listed
                    continue
                if S_ISREG(stat.st_mode):
                    append((name, stat.st_ctime_ns, stat.st_ino))
    finally:
        os.close(directory_fd)
    return listed


@dataclass(frozen=True)
class _CursorState:
    watermark_ns: int
    recent: Mapping[str, tuple[int, int]]

    @classmethod
    def parse(cls, cursor_json: str | None) -> "_CursorState":
        if not cursor_json:
            return cls(watermark_ns=-1, recent={})
        try:
            raw = json.loads(cursor_json)
            watermark_ns = int(raw["watermark_ns"])
            recent = {
                str(name): (int(version[0]), int(version[1])) for name, version in raw["recent"].items()
            }
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
            raise ValueError(f"not a landing-scan cursor: {cursor_json[:200]!r}") from error
        return cls(watermark_ns=watermark_ns, recent=recent)

    def to_json(self) -> str:
        recent = {name: [ctime_ns, inode] for name, (ctime_ns, inode) in sorted(self.recent.items())}
        return json.dumps({"watermark_ns": self.watermark_ns, "recent": recent}, separators=(",", ":"))


@dataclass(frozen=True)
class ScanResult:
    """The new uploads to process this tick (oldest first) and the cursor to store once they are.

    `backlog` counts new uploads left for later ticks because of the limit. When a tick stops early
    (a time budget), `cursor_after(count)` is the cursor for having processed only the first `count`
    of `new_files`: the rest are reported again by the next scan.
    """

    new_files: list[Path]
    next_cursor: str
    backlog: int
    _previous: _CursorState = field(repr=False, compare=False)
    _pending: tuple[ListedFile, ...] = field(repr=False, compare=False)
    _horizon_ns: int = field(repr=False, compare=False)

    def cursor_after(self, count: int) -> str:
        if not 0 <= count <= len(self.new_files):
            raise ValueError(f"count must be within 0..{len(self.new_files)}, got {count}")
        return _advance(self._previous, self._pending, count, self._horizon_ns).to_json()


def _advance(
    previous: _CursorState, pending: tuple[ListedFile, ...], processed: int, horizon_ns: int
) -> _CursorState:
    """The cursor once the first `processed` of the sorted new files `pending` are done.

    The watermark may rise to the settle horizon, but not past the oldest new file still unprocessed
    (it stays new: at the watermark and absent from `recent`), and never falls.
    """
    target = horizon_ns
    if processed < len(pending):
        target = min(target, pending[processed].ctime_ns)
    watermark_ns = max(previous.watermark_ns, target)
    recent = dict(previous.recent)
    for listed in pending[:processed]:
        recent[listed.name] = (listed.ctime_ns, listed.inode)
    recent = {name: version for name, version in recent.items() if version[0] >= watermark_ns}
    return _CursorState(watermark_ns=watermark_ns, recent=recent)


def scan_new_uploads(
    directory: Path,
    cursor_json: str | None,
    now_ns: int,
    limit: int,
    list_files: Callable[[Path], Iterable[tuple[str, int, int]]] = list_complete_uploads,
) -> ScanResult:
    """The complete uploads in `directory` not reported under `cursor_json`, at most `limit` of them.

    `now_ns` is the scan's start on the wall clock (`time.time_ns()` taken before listing). Files come
    sorted by (ctime, name); the returned cursor advances past those returned only, so the others are
    reported by the next scan. `list_files` lists (name, ctime_ns, inode) of the directory's files
    (tests pass a simulated directory).
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    previous = _CursorState.parse(cursor_json)
    watermark_ns, recent = previous.watermark_ns, previous.recent
    # Below the watermark means seen; at or above it, seen only as this exact version (ctime, inode).
    new = [
        ListedFile(name, ctime_ns, inode)
        for name, ctime_ns, inode in list_files(directory)
        if ctime_ns >= watermark_ns
        and recent.get(name) != (ctime_ns, inode)
        and is_complete_upload_name(name)
    ]
    pending = tuple(sorted(new, key=lambda listed: (listed.ctime_ns, listed.name)))
    horizon_ns = now_ns - SETTLE_NS
    returned = pending[:limit]
    return ScanResult(
        new_files=[Path(directory, listed.name) for listed in returned],
        next_cursor=_advance(previous, pending, len(returned), horizon_ns).to_json(),
        backlog=len(pending) - len(returned),
        _previous=previous,
        _pending=pending,
        _horizon_ns=horizon_ns,
    )
