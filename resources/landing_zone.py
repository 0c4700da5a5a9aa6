"""The landing zone where devices upload, and the quarantine where unreadable uploads are kept.

Both roots are storage URIs (a local path, or `s3://...` where devices upload in production) served
by the same code. A file that cannot be read or breaks its contract is moved, never deleted, to
`quarantine/<source>/<same sub-folder>/` beside a JSON sidecar that names the reason, so an operator
can inspect it, fix the device, and re-land it.
"""

import datetime as dt
import hashlib
import json
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

from resources.filesystems import exists, filesystem_and_path, join_uri, read_bytes, write_bytes
from resources.upload_listing import UploadLister, is_complete_upload_name, lister_for

if TYPE_CHECKING:
    import pyarrow as pa

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
class Upload:
    """An upload conformed to its contract, the columns its contract does not know (dropped), and the
    sha256 and size of the very bytes that were parsed."""

    table: "pa.Table"
    extra_columns: tuple[str, ...]
    sha256: str
    size_bytes: int


def parse_upload(data: bytes, conform: "Callable[[pa.Table], pa.Table]") -> Upload:
    """Parse one Parquet upload's bytes and conform them to a contract, or raise `UnreadableUpload`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sha256 = hashlib.sha256(data).hexdigest()
    if not data:
        raise UnreadableUpload("empty file: 0 bytes")
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UnreadableUpload(f"unreadable Parquet: {first_line}") from error
    try:
        conformed = conform(table)
    except ValueError as error:
        raise UnreadableUpload(str(error)) from error
    extra = tuple(name for name in table.column_names if name not in conformed.column_names)
    return Upload(conformed, extra, sha256, len(data))


def read_upload(uri: str, conform: "Callable[[pa.Table], pa.Table]") -> Upload:
    """Read one upload whole (a single GET on S3) and parse it; see `parse_upload`."""
    return parse_upload(read_bytes(uri), conform)


class LandingZoneResource(dg.ConfigurableResource):
    """Lists uploads under `landing_root/<source>/` and quarantines the bad ones (paths or `s3://` URIs)."""

    landing_root: str
    quarantine_root: str

    def source_uri(self, source: str, *parts: str) -> str:
        return join_uri(self.landing_root, source, *[part for part in parts if part])

    def uploads(self, source: str, subdirectory: str = "") -> list[str]:
        """URIs of the complete uploads (`*.parquet`, not dot-prefixed temp files) in one folder, by name."""
        import pyarrow.fs as pafs

        fs, directory = filesystem_and_path(self.source_uri(source, subdirectory))
        infos = fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
        names = sorted(
            posixpath.basename(info.path)
            for info in infos
            if info.type == pafs.FileType.File and is_complete_upload_name(posixpath.basename(info.path))
        )
        return [self.source_uri(source, subdirectory, name) for name in names]

    def lister(self, source: str) -> UploadLister:
        """The day-bounded listing of `source` that the landing sensors scan."""
        return lister_for(self.source_uri(source))

    def quarantine(
        self, uri: str, source: str, reason: str, run_id: str | None = None, sha256: str | None = None
    ) -> QuarantinedFile:
        """Move the upload at `uri` into the quarantine with a JSON sidecar naming `reason`.

        A second copy of an already quarantined file (same bytes) is not stored twice; a different
        file of the same name is kept beside it under a name carrying its hash. The sidecar is written
        first, so a crash in between leaves the upload in place to be handled again, never lost.
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
        target_fs, target_path = filesystem_and_path(target)
        if exists(target_fs, target_path) and hashlib.sha256(read_bytes(target)).hexdigest() != sha256:
            stem, suffix = posixpath.splitext(target)
            target = f"{stem}-{sha256[:12]}{suffix}"
            target_fs, target_path = filesystem_and_path(target)
        sidecar = {
            "original_path": uri,
            "reason": reason,
            "sha256": sha256,
            "size_bytes": info.size,
            "quarantined_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "run_id": run_id,
        }
        write_bytes(target + SIDECAR_SUFFIX, (json.dumps(sidecar, indent=2) + "\n").encode())
        if type(target_fs) is type(fs):
            target_fs.create_dir(posixpath.dirname(target_path), recursive=True)
            fs.move(path, target_path)
        else:  # landing and quarantine on different stores: copy, then remove the original
            write_bytes(target, data if data is not None else read_bytes(uri))
            fs.delete_file(path)
        return QuarantinedFile(uri, target, reason, sha256)
