"""The edge-feedback sensor: turns each new feedback upload in the landing zone into one partitioned run.

Each tick lists the recent day prefixes of `landing/edge_feedback/` (a directory or an S3 prefix) with
the cursor-based scan (`sensors.landing_scan`), so uploads seen on earlier ticks cost nothing; a fresh
cursor works through the uploads already there in key order, a page of the listing per tick. A new
upload must be keyed `date=<upload day>/<batch_id>.parquet` and conform to the
feedback contract; then its batch id becomes a dynamic partition (added once) and it gets a run
request whose run key is the batch id plus the file's content hash. The daemon never launches two runs
with the same run key, so the same bytes seen again (a replayed cursor, an identical re-upload) do not
run twice, while a re-upload with different bytes is a new version of the batch: a new run of the
same partition. An upload that is not readable or breaks the contract goes to
`quarantine/edge_feedback/` with a JSON sidecar naming the reason; the other uploads still flow.
"""

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

from resources.filesystems import read_bytes
from resources.landing_zone import LandingZoneResource, inspect_upload
from resources.upload_bounds import DEFAULT_BOUNDS
from resources.upload_listing import ListedUpload, UploadLister
from sensors.landing_scan import scan_new_uploads

if TYPE_CHECKING:  # what `dg.define_asset_job` returns; Dagster does not export the class itself
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

SENSOR_NAME = "edge_feedback_sensor"
FEEDBACK_FILE_TAG = "fleetml/feedback_file"
"""Key of the upload relative to the landing root, e.g. `edge_feedback/date=YYYY-MM-DD/<batch_id>.parquet`."""
FEEDBACK_SHA256_TAG = "fleetml/feedback_sha256"
"""sha256 of the upload the run was requested for: the run should refuse a file that no longer matches."""
TRIGGER_TAG = "fleetml/trigger"
OUTSIDE_DAY_PREFIX = (
    "upload outside a date=YYYY-MM-DD/ prefix: the uploader must key uploads by their UTC upload day"
)


@dataclass(frozen=True)
class FeedbackUpload:
    """A feedback upload that passed the contract: the batch it belongs to and the version of it."""

    batch_id: str
    sha256: str
    relative_path: str
    rows: int
    extra_columns: tuple[str, ...]

    @property
    def run_key(self) -> str:
        return f"{self.batch_id}:{self.sha256[:16]}"


class UploadReplaced(Exception):
    """The upload was replaced while it was read; the scan reports the newer version on the next tick."""


def check_feedback_upload(
    listed: ListedUpload, lister: UploadLister, uri: str, source: str
) -> FeedbackUpload:
    """Name, bounds and contract checks of one listed upload from its footer, and its content hash.

    The sensor decodes no data: an upload over its size bound is refused from the listing, and the
    rest is judged by its footer (`inspect_upload`), so no upload can make a tick slow or large. Raises
    `ValueError` with a one-line reason when the upload breaks the contract, `UploadReplaced` when a
    re-upload replaced the listed version meanwhile (its bytes are then no evidence against the new
    version, which the next tick lists), and `FileNotFoundError` when it is gone.
    """
    # pyarrow (and numpy behind it) loads on the first upload, not with the code location.
    from edge_packaging.feedback_contract import FEEDBACK_SCHEMA, batch_id_of

    name = listed.key.rsplit("/", 1)[-1]
    try:
        if "/" not in listed.key:
            raise ValueError(OUTSIDE_DAY_PREFIX)
        batch_id = batch_id_of(name)
        if listed.size_bytes > DEFAULT_BOUNDS.max_file_bytes:
            raise ValueError(
                f"upload of {listed.size_bytes} bytes is over the limit of {DEFAULT_BOUNDS.max_file_bytes}"
            )
        upload = inspect_upload(read_bytes(uri), FEEDBACK_SCHEMA)
    except ValueError:
        if lister.current(listed.key) != listed:
            raise UploadReplaced(listed.key) from None
        raise
    if lister.current(listed.key) != listed:
        raise UploadReplaced(listed.key)
    return FeedbackUpload(
        batch_id=batch_id,
        sha256=upload.sha256,
        relative_path=f"{source}/{listed.key}",
        rows=upload.rows,
        extra_columns=upload.extra_columns,
    )


def build_edge_feedback_sensor(
    job: "UnresolvedAssetJobDefinition | dg.JobDefinition",
    partitions_def: dg.DynamicPartitionsDefinition,
    source: str = "edge_feedback",
    minimum_interval_seconds: int = 30,
    max_files_per_tick: int = 200,
    tick_budget_seconds: float = 30.0,
) -> dg.SensorDefinition:
    """The `edge_feedback_sensor`: one run of `job` per new valid upload under `landing/<source>/`.

    `partitions_def` is the dynamic partitions definition of the job's assets (one partition per batch
    id). At most `max_files_per_tick` uploads are handled per tick, and a tick stops taking new files
    after `tick_budget_seconds`, well inside the daemon's 60 s limit; the rest wait for the next tick.
    """
    if partitions_def.name is None:
        raise ValueError("the edge-feedback partitions definition needs a name")
    partitions_name = partitions_def.name

    @dg.sensor(
        name=SENSOR_NAME,
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Requests one run per new feedback upload in landing/{source}/ (partition = batch id, run key ="
            f" batch id + content hash) and quarantines uploads that break the feedback contract."
        ),
    )
    def edge_feedback_sensor(
        context: dg.SensorEvaluationContext, landing_zone: LandingZoneResource
    ) -> dg.SensorResult:
        started = time.monotonic()
        lister = landing_zone.lister(source)
        scan = scan_new_uploads(lister, context.cursor, time.time_ns(), max_files_per_tick)

        run_requests: list[dg.RunRequest] = []
        batch_ids: list[str] = []
        quarantined = skipped = handled = accepted_rows = 0
        for listed in scan.new_files:
            if handled and time.monotonic() - started > tick_budget_seconds:
                break  # every tick takes at least one file, so a slow store still makes progress
            handled += 1
            uri = landing_zone.source_uri(source, listed.key)
            try:
                upload = check_feedback_upload(listed, lister, uri, source)
            except (FileNotFoundError, UploadReplaced):
                skipped += 1  # moved away or replaced since listed: a replacement is a new version
                continue
            except ValueError as error:
                reason = str(error)
                try:
                    landing_zone.quarantine(uri, source, reason)
                except FileNotFoundError:
                    skipped += 1
                    continue
                except OSError as quarantine_error:
                    context.log.error(f"could not quarantine {listed.key} ({reason}): {quarantine_error}")
                    skipped += 1
                    continue
                context.log.warning(f"quarantined {listed.key}: {reason}")
                quarantined += 1
                continue
            except OSError as error:
                context.log.error(f"could not read {listed.key}, left in place: {error}")
                skipped += 1
                continue

            if upload.extra_columns:  # devices may send fields ahead of the contract: worth knowing
                dropped = ", ".join(upload.extra_columns)
                context.log.info(f"{listed.key}: columns not in the contract dropped: {dropped}")
            accepted_rows += upload.rows
            batch_ids.append(upload.batch_id)
            run_requests.append(
                dg.RunRequest(
                    run_key=upload.run_key,
                    partition_key=upload.batch_id,
                    tags={
                        FEEDBACK_FILE_TAG: upload.relative_path,
                        FEEDBACK_SHA256_TAG: upload.sha256,
                        TRIGGER_TAG: SENSOR_NAME,
                    },
                )
            )

        # One membership query a tick, not one per upload (a round trip each to the instance's database).
        accepted_batches = list(dict.fromkeys(batch_ids))
        existing = (
            context.instance.get_existing_dynamic_partitions(partitions_name, accepted_batches)
            if accepted_batches
            else set()
        )
        new_partitions = [batch_id for batch_id in accepted_batches if batch_id not in existing]
        left_over = scan.backlog + len(scan.new_files) - handled
        sweep_note = (
            ", and the sweep of uploads older than the cursor goes on" if scan.sweeping_after(handled) else ""
        )
        context.log.info(
            f"edge feedback: {len(scan.new_files) + scan.backlog} new,"
            f" {len(run_requests)} accepted ({accepted_rows} rows),"
            f" {quarantined} quarantined, {skipped} skipped, {left_over} left for the next tick{sweep_note}"
            f" ({time.monotonic() - started:.2f} s)"
        )
        partition_requests = [partitions_def.build_add_request(new_partitions)] if new_partitions else []
        return dg.SensorResult(
            run_requests=run_requests,
            dynamic_partitions_requests=partition_requests,
            cursor=scan.cursor_after(handled),
        )

    return edge_feedback_sensor
