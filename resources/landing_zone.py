"""The landing zone where devices upload, and the quarantine where unreadable uploads are kept.

A file that cannot be read or breaks its contract is moved, never deleted, to
`quarantine/<source>/<same sub-folder>/` beside a JSON sidecar that names the reason, so an operator
can inspect it, fix the device, and re-land it.
"""

import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Upload:
    """An upload conformed to its contract, and the columns its contract does not know (dropped)."""

    table: "pa.Table"
    extra_columns: tuple[str, ...]


def read_upload(path: Path, conform: "Callable[[pa.Table], pa.Table]") -> Upload:
    """Read one Parquet upload and conform it to its contract, or raise `UnreadableUpload`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.stat().st_size == 0:
        raise UnreadableUpload("empty file: 0 bytes")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UnreadableUpload(f"unreadable Parquet: {first_line}") from error
    try:
        conformed = conform(table)
    except ValueError as error:
        raise UnreadableUpload(str(error)) from error
    extra = tuple(name for name in table.column_names if name not in conformed.column_names)
    return Upload(conformed, extra)


class LandingZoneResource(dg.ConfigurableResource):
    """Lists uploads under `landing_root/<source>/` and quarantines the bad ones."""

    landing_root: str
    quarantine_root: str

    def uploads(self, source: str, subdirectory: str = "") -> list[Path]:
        """Complete uploads (`*.parquet`, not dot-prefixed temp files), sorted by name."""
        directory = Path(self.landing_root, source, subdirectory)
        if not directory.is_dir():
            return []
        return sorted(
            path for path in directory.glob("*.parquet") if path.is_file() and not path.name.startswith(".")
        )

    def quarantine(self, path: Path, source: str, reason: str, run_id: str | None = None) -> QuarantinedFile:
        """Move `path` into the quarantine with a JSON sidecar naming `reason`.

        A second copy of an already quarantined file (same bytes) is not stored twice; a different
        file of the same name is kept beside it under a name carrying its hash.
        """
        sha256 = file_sha256(path)
        relative = path.relative_to(Path(self.landing_root, source))
        target = Path(self.quarantine_root, source, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and file_sha256(target) != sha256:
            target = target.with_name(f"{target.stem}-{sha256[:12]}{target.suffix}")
        sidecar = {
            "original_path": str(path),
            "reason": reason,
            "sha256": sha256,
            "size_bytes": path.stat().st_size,
            "quarantined_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "run_id": run_id,
        }
        sidecar_path = target.with_name(target.name + SIDECAR_SUFFIX)
        temp_sidecar = sidecar_path.with_name(f".{sidecar_path.name}.tmp")
        temp_sidecar.write_text(json.dumps(sidecar, indent=2) + "\n")
        os.replace(temp_sidecar, sidecar_path)
        os.replace(path, target)
        return QuarantinedFile(str(path), str(target), reason, sha256)
