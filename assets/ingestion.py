"""`raw_telemetry`: a day of device uploads from the landing zone, as one table."""

import posixpath
from collections.abc import Iterable
from typing import TYPE_CHECKING

import dagster as dg

from assets.partitions import daily_telemetry_partitions
from resources.lake import LakeResource
from resources.landing_zone import LandingZoneResource, UnreadableUpload, UploadReader, open_upload

if TYPE_CHECKING:
    import pyarrow as pa

TELEMETRY_SOURCE = "telemetry"
SOURCE_FILE_COLUMN = "source_file"


def landing_subdirectory(partition_key: str) -> str:
    return f"date={partition_key}"


def raw_telemetry_schema() -> "pa.Schema":
    """The stored raw day: the contract's columns, nullable (the row rules judge nulls), and the file
    each row came from."""
    import pyarrow as pa

    from edge_packaging.telemetry_contract import TELEMETRY_SCHEMA, nullable

    return nullable(TELEMETRY_SCHEMA).append(pa.field(SOURCE_FILE_COLUMN, pa.string(), nullable=False))


def accepted_tables(upload: UploadReader) -> "Iterable[pa.Table]":
    """An upload's conformed row groups, once every one of them is known to conform: a file is taken or
    quarantined whole, never in part.

    A device-day is one row group, read once. A larger upload is judged first, decoding one row group
    at a time, and read again as it is written, so what is held stays one row group, not the upload.
    Its bytes are already in memory, so the second reading decodes what the first accepted.
    """
    if upload.row_groups <= 1:
        return list(upload.tables())
    for _ in upload.tables():
        pass
    return upload.tables()


@dg.asset(
    partitions_def=daily_telemetry_partitions,
    group_name="telemetry",
    kinds={"parquet"},
    code_version="1",
)
def raw_telemetry(
    context: dg.AssetExecutionContext, lake: LakeResource, landing_zone: LandingZoneResource
) -> dg.MaterializeResult:
    """Every upload of the day from `landing/telemetry/date=YYYY-MM-DD/`, conformed to the telemetry
    contract, with the file each row came from.

    A file that cannot be read or breaks the schema is moved to `quarantine/telemetry/` with a JSON
    reason, and the rest of the day still flows. Extra columns are tolerated and dropped. The day is
    streamed, one upload at a time, into row groups of the stored partition, which is published
    atomically and replaced whole on a rerun, so rows are never duplicated.
    """
    import pyarrow as pa

    from edge_packaging.telemetry_contract import conform_to_telemetry_contract

    partition_key = context.partition_key
    subdirectory = landing_subdirectory(partition_key)
    uploads = landing_zone.uploads(TELEMETRY_SOURCE, subdirectory)
    misnamed = landing_zone.misnamed_uploads(TELEMETRY_SOURCE, subdirectory)
    if not uploads and not misnamed:
        raise dg.Failure(
            description=f"no telemetry uploads for {partition_key} under "
            f"{landing_zone.source_uri(TELEMETRY_SOURCE, subdirectory)}",
        )
    quarantined: list[tuple[str, str]] = []
    extra_columns: set[str] = set()
    files_read = 0
    for raw_name in misnamed:
        moved = landing_zone.quarantine_misnamed(TELEMETRY_SOURCE, subdirectory, raw_name, run_id=context.run.run_id)
        context.log.warning(f"quarantined {moved.quarantined_path}: {moved.reason}")
        quarantined.append((posixpath.basename(moved.quarantined_path), moved.reason))
    with lake.partition_writer(context.asset_key.path, partition_key, raw_telemetry_schema()) as day:
        for uri in uploads:
            name = posixpath.basename(uri)
            try:
                upload = open_upload(uri, conform_to_telemetry_contract)
                tables = accepted_tables(upload)
            except Exception as error:
                if isinstance(error, OSError):
                    raise  # the store failed, not the file: the run fails and a rerun reads it again
                # Whatever one file does to the reader is that file's fault: it is kept, and the day flows.
                unreadable = isinstance(error, UnreadableUpload)
                reason = str(error) if unreadable else f"{type(error).__name__}: {error}"
                moved = landing_zone.quarantine(uri, TELEMETRY_SOURCE, reason, run_id=context.run.run_id)
                context.log.warning(f"quarantined {name}: {reason} -> {moved.quarantined_path}")
                quarantined.append((name, reason))
                continue
            source = pa.scalar(f"{subdirectory}/{name}", type=pa.string())
            for table in tables:
                day.write(table.append_column(SOURCE_FILE_COLUMN, pa.repeat(source, table.num_rows)))
            extra_columns.update(upload.extra_columns)
            files_read += 1
    stored = day.stored
    quarantine_md = "\n".join(f"| `{name}` | {reason} |" for name, reason in quarantined)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": stored.rows,
            "uri": dg.MetadataValue.path(stored.uri),
            "size_bytes": stored.size_bytes,
            "files_read": files_read,
            "files_quarantined": len(quarantined),
            "quarantined_files": dg.MetadataValue.md(
                "| file | reason |\n| --- | --- |\n" + quarantine_md if quarantined else "none"
            ),
            "extra_columns_dropped": sorted(extra_columns),
        }
    )
