"""Bounds on what one device upload may cost to read, checked before its data is decoded.

A Parquet file is small on disk and can be huge in memory: pages compress, and a dictionary page
holding one long string can be referenced by every row (a 661-byte file decodes to 819 MB). So an
upload is judged in two cheap steps before anything is expanded:

1. `check_footer`: the file's size, its row count and the decoded sizes its footer declares (fixed-
   width values counted from each column chunk's value count, everything else from its uncompressed
   page size). This reads no data page: the edge-feedback sensor stops here.
2. `check_dictionaries`: strings are read dictionary-encoded, and no dictionary value may exceed
   `max_string_bytes` (the contracts' strings are ids, classes and hashes), so expanding them costs
   at most rows x columns x that bound.

An upload over a bound is refused with a one-line reason, and quarantined like any unreadable upload.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

_FIXED_WIDTH_BYTES = {"BOOLEAN": 1, "INT32": 4, "FLOAT": 4, "INT64": 8, "DOUBLE": 8, "INT96": 12}


class UploadOverBounds(ValueError):
    """The upload is over a bound; the message is the one-line reason."""


@dataclass(frozen=True)
class UploadBounds:
    """What one upload may hold. Telemetry uploads are one device-day (tens of windows), feedback
    uploads one revision-day batch: the defaults leave a thousandfold margin over both."""

    max_file_bytes: int = 256 * 2**20
    max_rows: int = 200_000
    max_decoded_bytes: int = 2 * 2**30
    max_string_bytes: int = 256


DEFAULT_BOUNDS = UploadBounds()


def check_footer(parquet: "pq.ParquetFile", file_bytes: int, bounds: UploadBounds = DEFAULT_BOUNDS) -> int:
    """Refuse an upload whose size, rows or declared decoded size is over `bounds`; return its rows."""
    if file_bytes > bounds.max_file_bytes:
        raise UploadOverBounds(f"upload of {file_bytes} bytes is over the limit of {bounds.max_file_bytes}")
    metadata = parquet.metadata
    if metadata.num_rows > bounds.max_rows:
        raise UploadOverBounds(f"upload of {metadata.num_rows} rows is over the limit of {bounds.max_rows}")
    decoded = 0
    for group_index in range(metadata.num_row_groups):
        group = metadata.row_group(group_index)
        for column_index in range(group.num_columns):
            chunk = group.column(column_index)
            width = _FIXED_WIDTH_BYTES.get(chunk.physical_type)
            decoded += chunk.num_values * width if width else chunk.total_uncompressed_size
    if decoded > bounds.max_decoded_bytes:
        raise UploadOverBounds(f"upload decodes to {decoded} bytes, over the limit of {bounds.max_decoded_bytes}")
    return metadata.num_rows


def string_columns(schema: "pa.Schema") -> list[str]:
    import pyarrow as pa

    return [field.name for field in schema if pa.types.is_string(field.type) or pa.types.is_large_string(field.type)]


def check_dictionaries(table: "pa.Table", bounds: UploadBounds = DEFAULT_BOUNDS) -> "pa.Table":
    """Refuse a dictionary value over `max_string_bytes`; return `table` with its strings expanded."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for index, field in enumerate(table.schema):
        if not pa.types.is_dictionary(field.type):
            continue
        column = table.column(index)
        for chunk in column.chunks:
            lengths = pc.binary_length(chunk.dictionary)
            longest = pc.max(lengths).as_py() if len(lengths) else 0
            if longest and longest > bounds.max_string_bytes:
                raise UploadOverBounds(
                    f"column {field.name} holds a value of {longest} bytes, over the limit of {bounds.max_string_bytes}"
                )
        table = table.set_column(index, field.name, pc.cast(column, field.type.value_type))
    return table
