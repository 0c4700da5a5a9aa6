"""The lake: where every table asset writes its output, one Parquet object per asset partition.

The root is a URI (a local path by default, `s3://...` in production); pyarrow's filesystem layer
serves both, so asset code never branches on the environment.
"""

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

from resources.filesystems import atomic_object, filesystem_and_path, safe_segment

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

UNPARTITIONED = "__all__"


@dataclass(frozen=True)
class StoredTable:
    """Where a table landed and what it holds, for asset metadata."""

    uri: str
    rows: int
    size_bytes: int


class LakeResource(dg.ConfigurableResource):
    """Reads and writes asset tables under `uri`, addressed by asset key path and partition key."""

    uri: str

    def _filesystem(self) -> "tuple[pafs.FileSystem, str]":
        return filesystem_and_path(self.uri)

    def _object_path(self, root: str, key: Sequence[str], partition_key: str | None) -> str:
        parts = [safe_segment(part, "asset key part") for part in key]
        partition = safe_segment(partition_key, "partition key") if partition_key else UNPARTITIONED
        return posixpath.join(root, *parts, f"{partition}.parquet")

    def table_uri(self, key: Sequence[str], partition_key: str | None = None) -> str:
        """The URI of one stored partition (what Spark or a user reads directly)."""
        return self._object_path(self.uri.rstrip("/"), key, partition_key)

    def write_table(
        self, key: Sequence[str], partition_key: str | None, table: "pa.Table"
    ) -> StoredTable:
        """Write (or replace) one partition atomically: readers see the old object or the new one.

        Rewriting a partition replaces it whole, so rerunning an asset never duplicates rows.
        """
        import pyarrow.parquet as pq

        fs, root = self._filesystem()
        path = self._object_path(root, key, partition_key)
        with atomic_object(fs, path) as temp_path:
            pq.write_table(table, temp_path, filesystem=fs, compression="zstd")
        return StoredTable(
            uri=self.table_uri(key, partition_key), rows=table.num_rows, size_bytes=fs.get_file_info(path).size
        )

    def read_table(
        self, key: Sequence[str], partition_key: str | None = None, columns: Sequence[str] | None = None
    ) -> "pa.Table":
        """Read one stored partition; a missing partition is an error naming what to materialize."""
        import pyarrow.parquet as pq

        fs, root = self._filesystem()
        path = self._object_path(root, key, partition_key)
        if fs.get_file_info(path).type.name == "NotFound":
            raise FileNotFoundError(
                f"{'/'.join(key)} has no stored partition {partition_key or UNPARTITIONED} at {path}: "
                "materialize it first"
            )
        return pq.read_table(path, filesystem=fs, columns=list(columns) if columns else None)

    def stored_partitions(self, key: Sequence[str]) -> list[str]:
        """Partition keys stored for `key`, sorted."""
        import pyarrow.fs as pafs

        fs, root = self._filesystem()
        directory = posixpath.join(root, *[safe_segment(part, "asset key part") for part in key])
        infos = fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
        return sorted(
            posixpath.basename(info.path).removesuffix(".parquet")
            for info in infos
            if info.path.endswith(".parquet") and not posixpath.basename(info.path).startswith(".")
        )
