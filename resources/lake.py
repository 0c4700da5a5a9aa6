"""The lake: where every table asset writes its output, one Parquet object per asset partition.

The root is a URI (a local path by default, `s3://...` in production); pyarrow's filesystem layer
serves both, so asset code never branches on the environment.

A day of telemetry is larger than a worker's memory should ever need to be (a million windows are
4.8 GB of IMU values), so its assets stream: `partition_writer` appends tables to a partition in
row groups of at most `ROW_GROUP_ROWS` rows and publishes it atomically when the block ends, and
`open_partition` reads a partition back one row group at a time. What a streamed asset holds is then
one row group, whatever the size of the day.
"""

import posixpath
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

from resources.filesystems import atomic_object, filesystem_and_path, safe_segment

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

UNPARTITIONED = "__all__"
ROW_GROUP_ROWS = 8_192
"""Rows per row group of a streamed partition, the unit its assets read, validate and write at a time:
8,192 telemetry windows are 39 MB of IMU values. A Parquet reader decodes a whole row group at once
(about four times its size at the peak of decoding a list column), so this bound, not the size of the
day, is what a reader of the partition holds. Measured on a day of 100,000 windows, validation peaks
at 0.84 GB with 8,192 rows and 1.1 GB with 16,384; great-expectations' fixed cost per chunk is what
smaller row groups would pay for."""


@dataclass(frozen=True)
class StoredTable:
    """Where a table landed and what it holds, for asset metadata."""

    uri: str
    rows: int
    size_bytes: int


class PartitionWriter:
    """Appends tables to a partition being written, in row groups of at most `row_group_rows` rows.

    Small tables (a device's upload of tens of rows) are gathered until the next would overflow a row
    group; a table of half a row group or more (a chunk of a streamed partition) that finds nothing
    gathered is written at once, split in row groups if it must be, so the writer does not hold it.
    Nothing is combined or copied: a row group is written from the tables' own buffers. The same
    tables in the same order give the same row groups, so a rerun writes the same bytes.
    """

    def __init__(self, parquet_writer: "pq.ParquetWriter", schema: "pa.Schema", row_group_rows: int):
        self._writer = parquet_writer
        self.schema = schema
        self._row_group_rows = row_group_rows
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0
        self.stored: StoredTable | None = None
        """Where the partition landed, once the `partition_writer` block has published it."""

    def write(self, table: "pa.Table") -> None:
        """Append `table`'s rows (its columns must be the partition's, in order)."""
        if table.num_rows == 0:
            return
        if not table.schema.equals(self.schema):
            table = table.cast(self.schema)
        if self._pending_rows + table.num_rows > self._row_group_rows:
            self.flush()
        if not self._pending and table.num_rows >= self._row_group_rows // 2:
            self._writer.write_table(table, row_group_size=self._row_group_rows)
            self.rows += table.num_rows
            return
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= self._row_group_rows:
            self.flush()

    def flush(self) -> None:
        """Write what is gathered as row group(s)."""
        import pyarrow as pa

        if not self._pending:
            return
        gathered = self._pending[0] if len(self._pending) == 1 else pa.concat_tables(self._pending)
        self._writer.write_table(gathered, row_group_size=self._row_group_rows)
        self.rows += gathered.num_rows
        self._pending, self._pending_rows = [], 0


class PartitionReader:
    """One stored partition, open for reading a row group at a time."""

    def __init__(self, file: "pa.NativeFile", uri: str):
        import pyarrow.parquet as pq

        self._file = file
        self._parquet = pq.ParquetFile(file)
        self.uri = uri

    @property
    def schema(self) -> "pa.Schema":
        return self._parquet.schema_arrow

    @property
    def num_rows(self) -> int:
        return self._parquet.metadata.num_rows

    @property
    def num_row_groups(self) -> int:
        return self._parquet.metadata.num_row_groups

    def row_groups(self, columns: Sequence[str] | None = None) -> "Iterator[pa.Table]":
        """The partition's rows, one row group at a time, in order."""
        for index in range(self.num_row_groups):
            yield self._parquet.read_row_group(index, columns=list(columns) if columns else None)

    def read_columns(self, columns: Sequence[str], dictionary: Sequence[str] = ()) -> "pa.Table":
        """Some columns of every row, for the narrow ones (ids) that a day-wide rule needs at once; the
        `dictionary` ones come dictionary-encoded, as stored (a few bytes a row for a repeated string)."""
        import pyarrow.parquet as pq

        if not dictionary:
            return self._parquet.read(columns=list(columns))
        return pq.ParquetFile(self._file, read_dictionary=list(dictionary)).read(columns=list(columns))


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

    @contextmanager
    def partition_writer(
        self, key: Sequence[str], partition_key: str | None, schema: "pa.Schema"
    ) -> Iterator[PartitionWriter]:
        """Stream one partition: append tables to the yielded writer; when the block ends the partition
        is published (or replaced) atomically, like `write_table`, and `writer.stored` says where.

        If the block raises, nothing is published and the partition stored before stays whole.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        fs, root = self._filesystem()
        path = self._object_path(root, key, partition_key)
        # Dictionaries pay off for repeated strings (ids, classes) and statistics for scalar columns;
        # on a list of IMU floats both only cost time (a fifth of the CPU of writing a row group of windows).
        strings = [field.name for field in schema if pa.types.is_string(field.type)]
        scalars = [field.name for field in schema if not pa.types.is_nested(field.type)]
        options = {"compression": "zstd", "use_dictionary": strings, "write_statistics": scalars}
        with (
            atomic_object(fs, path) as temp_path,
            pq.ParquetWriter(temp_path, schema, filesystem=fs, **options) as parquet_writer,
        ):
            writer = PartitionWriter(parquet_writer, schema, ROW_GROUP_ROWS)
            yield writer
            writer.flush()
        writer.stored = StoredTable(
            uri=self.table_uri(key, partition_key), rows=writer.rows, size_bytes=fs.get_file_info(path).size
        )

    def _existing_path(self, key: Sequence[str], partition_key: str | None) -> "tuple[pafs.FileSystem, str]":
        fs, root = self._filesystem()
        path = self._object_path(root, key, partition_key)
        if fs.get_file_info(path).type.name == "NotFound":
            raise FileNotFoundError(
                f"{'/'.join(key)} has no stored partition {partition_key or UNPARTITIONED} at {path}: "
                "materialize it first"
            )
        return fs, path

    def read_table(
        self, key: Sequence[str], partition_key: str | None = None, columns: Sequence[str] | None = None
    ) -> "pa.Table":
        """Read one stored partition whole; a missing partition is an error naming what to materialize."""
        import pyarrow.parquet as pq

        fs, path = self._existing_path(key, partition_key)
        return pq.read_table(path, filesystem=fs, columns=list(columns) if columns else None)

    @contextmanager
    def open_partition(
        self, key: Sequence[str], partition_key: str | None = None
    ) -> Iterator[PartitionReader]:
        """Open one stored partition to read it a row group at a time (one random-access file, ranged
        reads on S3); a missing partition is an error naming what to materialize."""
        fs, path = self._existing_path(key, partition_key)
        with fs.open_input_file(path) as file:
            yield PartitionReader(file, self.table_uri(key, partition_key))

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
