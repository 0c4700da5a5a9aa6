"""`raw_telemetry`: a day of device uploads from the landing zone, as one table."""

import posixpath

import dagster as dg

from assets.partitions import daily_telemetry_partitions
from resources.lake import LakeResource
from resources.landing_zone import LandingZoneResource, UnreadableUpload, read_upload

TELEMETRY_SOURCE = "telemetry"
SOURCE_FILE_COLUMN = "source_file"


def landing_subdirectory(partition_key: str) -> str:
    return f"date={partition_key}"


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
    reason, and the rest of the day still flows. Extra columns are tolerated and dropped. The stored
    partition is replaced whole on a rerun, so rows are never duplicated.
    """
    import pyarrow as pa

    from edge_packaging.telemetry_contract import TELEMETRY_SCHEMA, conform_to_telemetry_contract, nullable

    partition_key = context.partition_key
    subdirectory = landing_subdirectory(partition_key)
    uploads = landing_zone.uploads(TELEMETRY_SOURCE, subdirectory)
    tables: list[pa.Table] = []
    quarantined: list[tuple[str, str]] = []
    extra_columns: set[str] = set()
    for raw_name in landing_zone.misnamed_uploads(TELEMETRY_SOURCE, subdirectory):
        moved = landing_zone.quarantine_misnamed(TELEMETRY_SOURCE, subdirectory, raw_name, run_id=context.run.run_id)
        context.log.warning(f"quarantined {moved.quarantined_path}: {moved.reason}")
        quarantined.append((posixpath.basename(moved.quarantined_path), moved.reason))
    for uri in uploads:
        name = posixpath.basename(uri)
        try:
            upload = read_upload(uri, conform_to_telemetry_contract)
        except Exception as error:
            if isinstance(error, OSError):
                raise  # the store failed, not the file: the run fails and a rerun reads it again
            # Whatever one file does to the reader is that file's fault: it is kept, and the day flows.
            reason = str(error) if isinstance(error, UnreadableUpload) else f"{type(error).__name__}: {error}"
            moved = landing_zone.quarantine(uri, TELEMETRY_SOURCE, reason, run_id=context.run.run_id)
            context.log.warning(f"quarantined {name}: {reason} -> {moved.quarantined_path}")
            quarantined.append((name, reason))
            continue
        extra_columns.update(upload.extra_columns)
        source = pa.array([f"{subdirectory}/{name}"] * upload.table.num_rows, type=pa.string())
        tables.append(upload.table.append_column(SOURCE_FILE_COLUMN, source))
    if not uploads and not quarantined:
        raise dg.Failure(
            description=f"no telemetry uploads for {partition_key} under "
            f"{landing_zone.source_uri(TELEMETRY_SOURCE, subdirectory)}",
        )
    schema = nullable(TELEMETRY_SCHEMA).append(pa.field(SOURCE_FILE_COLUMN, pa.string(), nullable=False))
    combined = pa.concat_tables(tables) if tables else schema.empty_table()
    stored = lake.write_table(context.asset_key.path, partition_key, combined)
    quarantine_md = "\n".join(f"| `{name}` | {reason} |" for name, reason in quarantined)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": stored.rows,
            "uri": dg.MetadataValue.path(stored.uri),
            "size_bytes": stored.size_bytes,
            "files_read": len(tables),
            "files_quarantined": len(quarantined),
            "quarantined_files": dg.MetadataValue.md(
                "| file | reason |\n| --- | --- |\n" + quarantine_md if quarantined else "none"
            ),
            "extra_columns_dropped": sorted(extra_columns),
        }
    )
