"""Writing uploads into the landing zone the way a device's uploader must: atomically.

The platform's sensors list `*.parquet` files and read them at once, so a file must never be seen
half-written. The upload goes to a dot-prefixed temp file in the same directory (same filesystem,
so the rename is atomic) and is renamed into place when complete.
"""

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def write_parquet_atomically(table: pa.Table, path: Path) -> Path:
    """Write `table` to `path` (creating its directory); readers see no file or the whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp_path = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # Dictionaries pay off for repeated strings (ids, classes) but only cost time on float lists, and
    # min/max statistics help readers prune by scalar columns but mean nothing for list columns.
    string_columns = [field.name for field in table.schema if pa.types.is_string(field.type)]
    scalar_columns = [field.name for field in table.schema if not pa.types.is_list(field.type)]
    try:
        pq.write_table(table, temp_path, use_dictionary=string_columns, write_statistics=scalar_columns)
        os.replace(temp_path, path)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    return path
