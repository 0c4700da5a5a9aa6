"""The landing zone where devices upload, and the quarantine where unreadable uploads are kept.

Both roots are storage URIs (a local path, or `s3://...` where devices upload in production) served
by the same code. A file that cannot be read or breaks its contract is moved, never deleted, to
`quarantine/<source>/<same sub-folder>/` beside a JSON sidecar that names the reason, so an operator
can inspect it, fix the device, and re-land it.
"""

import datetime as dt
import hashlib
import json
import os
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

from resources.filesystems import exists, filesystem_and_path, is_remote, join_uri, read_bytes, write_bytes
from resources.upload_bounds import (
    DEFAULT_BOUNDS,
    UploadBounds,
    UploadOverBounds,
    check_dictionaries,
    check_footer,
    string_columns,
)
from resources.upload_listing import UploadLister, is_complete_upload_name, lister_for

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

SIDECAR_SUFFIX = ".quarantine.json"


class UnreadableUpload(ValueError):
    """An upload that cannot be turned into a table under its contract; the message is the reason."""


@dataclass(frozen=True)
class QuarantinedFile:
    """A file moved out of the landing zone, and why."""

    original_path: str
    quarantined_path: str
    reason: str
    sha256: str


@dataclass(frozen=True)
class UploadFacts:
    """What an upload's footer tells: rows, the columns its contract does not know, and the sha256
    and size of its bytes."""

    rows: int
    extra_columns: tuple[str, ...]
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class Upload:
    """An upload conformed to its contract, the columns its contract does not know (dropped), and the
    sha256 and size of the very bytes that were parsed."""

    table: "pa.Table"
    extra_columns: tuple[str, ...]
    sha256: str
    size_bytes: int


def _parquet_file(data: bytes, read_dictionary: list[str] | None = None) -> "pq.ParquetFile":
    """The upload's footer, parsed (no data page is read), or `UnreadableUpload`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not data:
        raise UnreadableUpload("empty file: 0 bytes")
    try:
        return pq.ParquetFile(pa.BufferReader(data), read_dictionary=read_dictionary)
    except (pa.ArrowException, OSError) as error:
        raise UnreadableUpload(f"unreadable Parquet: {_first_line(error)}") from error


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def inspect_upload(data: bytes, contract: "pa.Schema", bounds: UploadBounds = DEFAULT_BOUNDS) -> UploadFacts:
    """Judge an upload from its footer alone: bounds, rows and the contract's columns and types.

    What a sensor can afford on every new upload: it decodes no data, so no upload can make it slow
    or large, and what it accepts can still be refused by the full read (`parse_upload`) in the run.
    """
    from edge_packaging.telemetry_contract import ContractViolation, check_columns

    sha256 = hashlib.sha256(data).hexdigest()
    parquet = _parquet_file(data)
    try:
        rows = check_footer(parquet, len(data), bounds)
        if rows == 0:
            raise ContractViolation("empty upload: no rows")
        check_columns(parquet.schema_arrow, contract)
    except ValueError as error:
        raise UnreadableUpload(str(error)) from error
    extra = tuple(name for name in parquet.schema_arrow.names if name not in contract.names)
    return UploadFacts(rows, extra, sha256, len(data))


class UploadReader:
    """One upload's bytes, judged from its footer, then read and conformed a row group at a time.

    A telemetry upload is a device-day (tens of windows, one row group), but its bounds admit a
    thousand times more: a reader that decodes one row group at a time holds one row group, not the
    upload. The footer is checked against `bounds` before any data is read, and strings are read
    dictionary-encoded so that no value can expand past its bound (`resources.upload_bounds`).
    """

    def __init__(
        self, data: bytes, conform: "Callable[[pa.Table], pa.Table]", bounds: UploadBounds = DEFAULT_BOUNDS
    ):
        import pyarrow as pa

        self.sha256 = hashlib.sha256(data).hexdigest()
        self.size_bytes = len(data)
        footer = _parquet_file(data)
        self._parquet = _parquet_file(data, read_dictionary=string_columns(footer.schema_arrow))
        self._conform = conform
        self._bounds = bounds
        try:
            self.rows = check_footer(self._parquet, len(data), bounds)
            metadata = self._parquet.metadata
            groups = range(metadata.num_row_groups)
            self._row_groups = [index for index in groups if metadata.row_group(index).num_rows > 0]
        except UploadOverBounds as error:
            raise UnreadableUpload(str(error)) from error
        except (pa.ArrowException, OSError) as error:
            raise UnreadableUpload(f"unreadable Parquet: {_first_line(error)}") from error
        self.extra_columns: tuple[str, ...] = ()
        """The columns the contract does not know (dropped), once a row group has been conformed."""

    @property
    def row_groups(self) -> int:
        """Row groups holding rows."""
        return len(self._row_groups)

    def tables(self) -> "Iterator[pa.Table]":
        """The upload's rows conformed to the contract, one row group at a time, in order; raises
        `UnreadableUpload` at the first row group that cannot be read or conformed. An upload without
        rows yields its one empty table, if the contract accepts it."""
        for index in self._row_groups or [None]:
            yield self._conformed(index)

    def _conformed(self, row_group: int | None) -> "pa.Table":
        """Row group `row_group` (the whole, row-less upload for None), read and conformed."""
        import pyarrow as pa

        try:
            # A device-day's row group is small: decoding its columns on threads costs more than it saves.
            if row_group is None:
                table = self._parquet.read(use_threads=False)
            else:
                table = self._parquet.read_row_group(row_group, use_threads=False)
            table = check_dictionaries(table, self._bounds)
        except UploadOverBounds as error:
            raise UnreadableUpload(str(error)) from error
        except (pa.ArrowException, OSError) as error:
            raise UnreadableUpload(f"unreadable Parquet: {_first_line(error)}") from error
        try:
            conformed = self._conform(table)
        except ValueError as error:
            raise UnreadableUpload(str(error)) from error
        self.extra_columns = tuple(name for name in table.column_names if name not in conformed.column_names)
        return conformed


def parse_upload(
    data: bytes, conform: "Callable[[pa.Table], pa.Table]", bounds: UploadBounds = DEFAULT_BOUNDS
) -> Upload:
    """Parse one Parquet upload's bytes whole and conform them to a contract, or raise `UnreadableUpload`
    (see `UploadReader`, which reads the same way a row group at a time)."""
    import pyarrow as pa

    reader = UploadReader(data, conform, bounds)
    tables = list(reader.tables())
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
    return Upload(table, reader.extra_columns, reader.sha256, reader.size_bytes)


def open_upload(uri: str, conform: "Callable[[pa.Table], pa.Table]") -> UploadReader:
    """Read one upload's bytes (a single GET on S3) and judge its footer; see `UploadReader`."""
    return UploadReader(read_bytes(uri), conform)


def read_upload(uri: str, conform: "Callable[[pa.Table], pa.Table]") -> Upload:
    """Read one upload whole (a single GET on S3) and parse it; see `parse_upload`."""
    return parse_upload(read_bytes(uri), conform)


def _stored_sha256(uri: str) -> str | None:
    """sha256 of the object at `uri`, or None when there is none."""
    fs, path = filesystem_and_path(uri)
    return hashlib.sha256(read_bytes(uri)).hexdigest() if exists(fs, path) else None


def _regular_file_names(folder: str) -> list[bytes]:
    """Raw names of the regular files (not links, folders or devices) directly in a local folder."""
    try:
        with os.scandir(os.fsencode(folder)) as entries:
            return [entry.name for entry in entries if entry.is_file(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _is_utf8(name: bytes) -> bool:
    try:
        name.decode()
    except UnicodeDecodeError:
        return False
    return True


class LandingZoneResource(dg.ConfigurableResource):
    """Lists uploads under `landing_root/<source>/` and quarantines the bad ones (paths or `s3://` URIs)."""

    landing_root: str
    quarantine_root: str

    def source_uri(self, source: str, *parts: str) -> str:
        return join_uri(self.landing_root, source, *[part for part in parts if part])

    def uploads(self, source: str, subdirectory: str = "") -> list[str]:
        """URIs of the complete uploads (`*.parquet`, not dot-prefixed temp files) in one folder, by name.

        Only regular files count: a symlink in a local landing folder could point at any file the
        worker can read. A local name that is not UTF-8 has no URI: see `misnamed_uploads`.
        """
        import pyarrow.fs as pafs

        folder = self.source_uri(source, subdirectory)
        if is_remote(folder):
            fs, directory = filesystem_and_path(folder)
            infos = fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
            names = [posixpath.basename(info.path) for info in infos if info.type == pafs.FileType.File]
        else:
            names = [name.decode() for name in _regular_file_names(folder) if _is_utf8(name)]
        return [self.source_uri(source, subdirectory, name) for name in sorted(filter(is_complete_upload_name, names))]

    def misnamed_uploads(self, source: str, subdirectory: str = "") -> list[bytes]:
        """Local file names in the folder that are not UTF-8 (object-store keys always are)."""
        folder = self.source_uri(source, subdirectory)
        return [] if is_remote(folder) else sorted(name for name in _regular_file_names(folder) if not _is_utf8(name))

    def quarantine_misnamed(self, source: str, subdirectory: str, raw_name: bytes, run_id: str | None = None) -> QuarantinedFile:
        """Move a local upload whose name is not UTF-8 to the quarantine under a printable name."""
        printable = raw_name.decode("utf-8", "backslashreplace").replace("\\", "%")
        original = os.path.join(os.fsencode(self.source_uri(source, subdirectory)), raw_name)
        renamed = self.source_uri(source, subdirectory, f".misnamed-{printable}")
        os.replace(original, renamed)
        return self.quarantine(renamed, source, f"file name is not UTF-8: {printable!r}", run_id=run_id)

    def lister(self, source: str) -> UploadLister:
        """The day-bounded listing of `source` that the landing sensors scan."""
        return lister_for(self.source_uri(source))

    def quarantine(
        self, uri: str, source: str, reason: str, run_id: str | None = None, sha256: str | None = None
    ) -> QuarantinedFile:
        """Move the upload at `uri` into the quarantine with a JSON sidecar naming `reason`.

        Evidence is never replaced. A file of the same name with other bytes is kept beside the first
        under a name carrying its hash; a second copy of bytes already kept is not stored twice (the
        landing copy is removed) but gets a sidecar of its own, so every quarantining stays on record.
        The sidecar is written first, so a crash in between leaves the upload in place to be handled
        again, never lost.
        """
        source_root = self.source_uri(source) + "/"
        if not uri.startswith(source_root):
            raise ValueError(f"{uri} is not under the landing source {source_root}")
        relative = uri[len(source_root):]
        fs, path = filesystem_and_path(uri)
        info = fs.get_file_info(path)
        if info.type.name == "NotFound":
            raise FileNotFoundError(uri)
        data = None
        if sha256 is None:
            data = read_bytes(uri)
            sha256 = hashlib.sha256(data).hexdigest()
        target = join_uri(self.quarantine_root, source, relative)
        if _stored_sha256(target) not in (None, sha256):
            stem, suffix = posixpath.splitext(target)
            target = f"{stem}-{sha256[:12]}{suffix}"
        already_kept = _stored_sha256(target) == sha256
        now = dt.datetime.now(dt.timezone.utc)
        sidecar = {
            "original_path": uri,
            "reason": reason,
            "sha256": sha256,
            "size_bytes": info.size,
            "quarantined_at": now.isoformat(),
            "run_id": run_id,
        }
        sidecar_uri = target + SIDECAR_SUFFIX
        target_fs, target_path = filesystem_and_path(target)
        if exists(*filesystem_and_path(sidecar_uri)):
            sidecar_uri = f"{target}.{now:%Y%m%dT%H%M%S%fZ}{SIDECAR_SUFFIX}"
        write_bytes(sidecar_uri, (json.dumps(sidecar, indent=2) + "\n").encode())
        if already_kept:
            fs.delete_file(path)
        elif type(target_fs) is type(fs):
            target_fs.create_dir(posixpath.dirname(target_path), recursive=True)
            fs.move(path, target_path)
        else:  # landing and quarantine on different stores: copy, then remove the original
            write_bytes(target, data if data is not None else read_bytes(uri))
            fs.delete_file(path)
        return QuarantinedFile(uri, target, reason, sha256)
