"""Writing uploads into the landing zone the way a device's uploader must: atomically.

The landing zone is a local directory or an S3 prefix (`s3://bucket/landing`, reached with the
standard AWS environment variables, `AWS_ENDPOINT_URL` included, as any S3 client does). The
platform's sensors list `*.parquet` uploads and read them at once, so an upload must never be seen
half-written: locally it goes to a dot-prefixed temp file in the same directory and is renamed into
place; on S3 a single PUT is visible only once complete.
"""

import io
import os
import posixpath
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

Destination = TypeVar("Destination", str, Path)


def is_object_store(root: str | Path) -> bool:
    return isinstance(root, str) and "://" in root


def landing_join(root: Destination, *parts: str) -> Destination:
    """`root/parts...`: a `Path` under a local root, a URI string under an object-store root."""
    if is_object_store(root):
        return posixpath.join(root.rstrip("/"), *parts)  # type: ignore[union-attr, return-value]
    return Path(root, *parts)  # type: ignore[return-value]


def parquet_bytes(table: pa.Table) -> bytes:
    """An upload's bytes, written as device uploaders do."""
    # Dictionaries pay off for repeated strings (ids, classes) but only cost time on float lists, and
    # min/max statistics help readers prune by scalar columns but mean nothing for list columns.
    string_columns = [field.name for field in table.schema if pa.types.is_string(field.type)]
    scalar_columns = [field.name for field in table.schema if not pa.types.is_list(field.type)]
    sink = io.BytesIO()
    pq.write_table(table, sink, use_dictionary=string_columns, write_statistics=scalar_columns)
    return sink.getvalue()


def write_bytes_atomically(data: bytes, destination: Destination) -> Destination:
    """Land `data` at `destination` (creating its folder); readers see no upload or the whole upload."""
    if is_object_store(destination):
        fs, path = pafs.FileSystem.from_uri(str(destination))
        with fs.open_output_stream(path) as stream:  # one PUT: the object appears whole or not at all
            stream.write(data)
        return destination
    path = Path(destination)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp_path = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temp_path.write_bytes(data)
        os.replace(temp_path, path)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    return destination


def write_parquet_atomically(table: pa.Table, destination: Destination) -> Destination:
    """Write `table` as one upload at `destination`; see `write_bytes_atomically`."""
    return write_bytes_atomically(parquet_bytes(table), destination)


def folder_names(root: str | Path) -> list[str]:
    """Names of the folders (prefixes) directly under `root`; none when it does not exist."""
    if is_object_store(root):
        fs, path = pafs.FileSystem.from_uri(str(root))
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        return [posixpath.basename(info.path) for info in infos if info.type == pafs.FileType.Directory]
    folder = Path(root)
    return [entry.name for entry in folder.iterdir() if entry.is_dir()] if folder.is_dir() else []
