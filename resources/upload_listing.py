"""Listing the uploads of one landing source, on a POSIX directory or an S3 prefix.

Uploads are laid out by the UTC day they were uploaded: `<source>/date=YYYY-MM-DD/<name>.parquet`.
A listing can therefore skip whole days: `list_uploads(since_day)` visits the day prefixes from
`since_day` on and never the ones before, so a sensor's tick costs what arrived lately, not the
history. `list_uploads_after(key)` instead lists every upload in key order from the first key after
`key`, so that a backlog can be walked one page at a time across ticks. Each listed upload carries
the store's own arrival clock and a version of its bytes:

- POSIX: the ctime (a rename into place sets it) and the inode (a re-upload is a new inode);
- S3: LastModified (set by the server when the object is complete) and the ETag.

Complete uploads are `*.parquet` names that do not start with "." (writers use dot-prefixed temp
names). A file lying directly under `<source>/`, outside any day prefix, is listed too, with
`day=None`, so that the caller can quarantine it instead of letting it sit unseen.
"""

import bisect
import datetime as dt
import functools
import os
import re
from collections.abc import Iterator
from stat import S_ISDIR, S_ISREG
from typing import NamedTuple, Protocol

from resources.filesystems import S3Settings

UPLOAD_SUFFIX = ".parquet"
DAY_PREFIX = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")

LOCAL_SETTLE_NS = 2_000_000_000
"""POSIX: the kernel stamps ctime from a coarse clock, and a rename may land while a scan runs."""
S3_SETTLE_NS = 300_000_000_000
"""S3: LastModified of a multipart upload is when it *started*; an upload must complete within this."""


class ListedUpload(NamedTuple):
    """One complete upload: its key under the source (`date=.../name.parquet`), arrival, version and
    size (known before any byte is read, so an oversized upload is never read)."""

    key: str
    arrival_ns: int
    version: str
    size_bytes: int = 0


class UploadLister(Protocol):
    """What a landing scan needs of a store: day-bounded listings and how far behind to settle."""

    settle_ns: int

    def list_uploads(self, since_day: dt.date | None) -> Iterator[ListedUpload]: ...

    def list_uploads_after(self, after_key: str | None) -> Iterator[ListedUpload]:
        """Every upload (day prefixes and loose keys alike) in the store's key order, from the first
        key after `after_key` (from the start when None). The order is the store's own (bytewise on
        S3 and here locally; SeaweedFS walks folders) but the same on every call, which is what
        resuming after a key needs."""
        ...

    def current(self, key: str) -> ListedUpload | None:
        """The upload under `key` as the store has it now, or None when it is gone."""
        ...


def is_complete_upload_name(name: str) -> bool:
    """Whether `name` is a finished upload rather than a dot-prefixed temp file or another file."""
    return name.endswith(UPLOAD_SUFFIX) and not name.startswith(".")


def day_of_prefix(name: str) -> dt.date | None:
    match = DAY_PREFIX.match(name)
    if not match:
        return None
    try:
        return dt.date.fromisoformat(match.group(1))
    except ValueError:
        return None


def upload_day_prefix(day: dt.date) -> str:
    return f"date={day.isoformat()}"


class LocalUploadLister:
    """Uploads under a local directory, listed with `os.scandir` and one `stat` per upload."""

    settle_ns = LOCAL_SETTLE_NS

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def list_uploads(self, since_day: dt.date | None) -> Iterator[ListedUpload]:
        try:
            entries = sorted(os.scandir(self.directory), key=lambda entry: entry.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            day = day_of_prefix(entry.name)
            if day is not None and entry.is_dir(follow_symlinks=False):
                if since_day is None or day >= since_day:
                    yield from self._list_day(entry.path, entry.name)
            elif is_complete_upload_name(entry.name):
                listed = _listed_file(entry, entry.name)
                if listed:
                    yield listed

    def list_uploads_after(self, after_key: str | None) -> Iterator[ListedUpload]:
        # A day folder sorts as "<name>/", so that its keys come where S3 would list them among
        # loose keys; a folder whose keys all sort at or before `after_key` is never opened.
        try:
            with os.scandir(self.directory) as scanned:
                entries = [
                    (f"{entry.name}/", entry)
                    if day_of_prefix(entry.name) and entry.is_dir(follow_symlinks=False)
                    else (entry.name, entry)
                    for entry in scanned
                ]
        except (FileNotFoundError, NotADirectoryError):
            return
        for sort_key, entry in sorted(entries, key=lambda pair: pair[0]):
            if not sort_key.endswith("/"):
                if is_complete_upload_name(entry.name) and (after_key is None or entry.name > after_key):
                    listed = _listed_file(entry, entry.name)
                    if listed:
                        yield listed
            elif after_key is None or sort_key > after_key or after_key.startswith(sort_key):
                names = sorted(self._upload_names(entry.path))
                if after_key is not None and after_key.startswith(sort_key):
                    names = names[bisect.bisect_right(names, after_key[len(sort_key) :]) :]
                for name in names:
                    listed = self.current(f"{sort_key}{name}")
                    if listed:
                        yield listed

    @staticmethod
    def _upload_names(path: str) -> list[str]:
        try:
            with os.scandir(path) as entries:
                return [entry.name for entry in entries if is_complete_upload_name(entry.name)]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def current(self, key: str) -> ListedUpload | None:
        try:
            stat = os.stat(os.path.join(self.directory, key), follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return (
            ListedUpload(key, stat.st_ctime_ns, str(stat.st_ino), stat.st_size)
            if S_ISREG(stat.st_mode)
            else None
        )

    def _list_day(self, path: str, prefix: str) -> Iterator[ListedUpload]:
        # This loop is the whole cost of a tick that finds nothing new: one stat per upload of the day.
        try:
            directory_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            with os.scandir(directory_fd) as entries:
                for entry in entries:
                    if is_complete_upload_name(entry.name):
                        listed = _listed_file(entry, f"{prefix}/{entry.name}")
                        if listed:
                            yield listed
        finally:
            os.close(directory_fd)


def _listed_file(entry: os.DirEntry, key: str) -> ListedUpload | None:
    """A regular file's arrival (ctime) and version (inode); None for links, folders, vanished files."""
    try:
        stat = entry.stat(follow_symlinks=False)
    except FileNotFoundError:  # moved away (quarantined, re-uploaded) since it was listed
        return None
    if S_ISDIR(stat.st_mode) or not S_ISREG(stat.st_mode):
        return None
    return ListedUpload(key, stat.st_ctime_ns, str(stat.st_ino), stat.st_size)


class S3UploadLister:
    """Uploads under an S3 prefix, listed with ListObjectsV2: day prefixes first, then open days only.

    The first request lists the source's day prefixes and loose keys (`Delimiter="/"`, one page per
    thousand days); each open day is then listed in pages of a thousand keys.
    """

    def __init__(self, uri: str, settle_ns: int = S3_SETTLE_NS) -> None:
        bucket_and_prefix = uri.removeprefix("s3://").strip("/")
        self.bucket, _, prefix = bucket_and_prefix.partition("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.settle_ns = settle_ns
        self._client = s3_client(S3Settings.from_environment())

    def _pages(
        self, prefix: str, delimiter: str | None = None, start_after: str | None = None
    ) -> Iterator[dict]:
        paginator = self._client.get_paginator("list_objects_v2")
        options = {"Bucket": self.bucket, "Prefix": prefix}
        options |= ({"Delimiter": delimiter} if delimiter else {}) | (
            {"StartAfter": start_after} if start_after else {}
        )
        yield from paginator.paginate(**options)

    def list_uploads(self, since_day: dt.date | None) -> Iterator[ListedUpload]:
        days: list[str] = []
        for page in self._pages(self.prefix, delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(self.prefix) :].rstrip("/")
                day = day_of_prefix(name)
                if day is not None and (since_day is None or day >= since_day):
                    days.append(name)
            for item in page.get("Contents", []):
                listed = self._listed(item)
                if listed:
                    yield listed
        for day_prefix in sorted(days):
            for page in self._pages(f"{self.prefix}{day_prefix}/"):
                for item in page.get("Contents", []):
                    listed = self._listed(item)
                    if listed:
                        yield listed

    def list_uploads_after(self, after_key: str | None) -> Iterator[ListedUpload]:
        # One listing without a delimiter: S3 returns keys in order, a thousand a page, from StartAfter.
        start_after = f"{self.prefix}{after_key}" if after_key is not None else None
        for page in self._pages(self.prefix, start_after=start_after):
            for item in page.get("Contents", []):
                listed = self._listed(item)
                if listed:
                    yield listed

    def current(self, key: str) -> ListedUpload | None:
        from botocore.exceptions import ClientError

        try:
            head = self._client.head_object(Bucket=self.bucket, Key=f"{self.prefix}{key}")
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        listed = {"Key": f"{self.prefix}{key}", "LastModified": head["LastModified"], "ETag": head["ETag"]}
        return self._listed(listed | {"Size": head["ContentLength"]})

    def _listed(self, item: dict) -> ListedUpload | None:
        key = item["Key"][len(self.prefix) :]
        parts = key.split("/")
        if len(parts) > 2 or (len(parts) == 2 and day_of_prefix(parts[0]) is None):
            return None  # not `<name>` or `date=<day>/<name>`: not an upload of this layout
        if not is_complete_upload_name(parts[-1]):
            return None
        arrival_ns = int(item["LastModified"].timestamp()) * 1_000_000_000
        return ListedUpload(key, arrival_ns, item["ETag"].strip('"'), int(item["Size"]))


def parse_s3_timestamp(value: str) -> dt.datetime:
    """A timestamp of an S3 response: ISO 8601 in listings, fast; anything else through botocore.

    botocore's own parser (dateutil) costs about 0.1 ms a timestamp: two thirds of the time of
    listing 100,000 keys, one timestamp per key."""
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        from botocore.utils import parse_timestamp

        return parse_timestamp(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@functools.lru_cache(maxsize=8)
def s3_client(settings: S3Settings):
    """A botocore S3 client for the same store pyarrow reaches (pyarrow lists no ETags).

    Its session parses timestamps with `parse_s3_timestamp`: the parser is a session setting."""
    import botocore.session
    from botocore.config import Config

    session = botocore.session.get_session()
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_s3_timestamp)
    return session.create_client(
        "s3",
        endpoint_url=settings.endpoint_url,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        region_name=settings.region,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}),
    )


def lister_for(uri: str) -> UploadLister:
    """The lister of the landing source at `uri` (a local directory or an `s3://` prefix)."""
    if str(uri).startswith("s3://"):
        return S3UploadLister(uri)
    return LocalUploadLister(str(uri))
