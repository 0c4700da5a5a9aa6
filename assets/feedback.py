"""`edge_feedback` and `harsh_event/feedback_features`: one partition per device upload batch."""

import re

import dagster as dg

from assets.partitions import feedback_batches
from assets.validation import quarantined_share_check
from resources.filesystems import join_uri
from resources.lake import LakeResource
from resources.landing_zone import LandingZoneResource

FEEDBACK_SOURCE = "edge_feedback"
EDGE_FEEDBACK_KEY = dg.AssetKey("edge_feedback")
FEEDBACK_ROW_QUARANTINE_KEY = dg.AssetKey("edge_feedback_row_quarantine")
FEEDBACK_SHARE_CHECK = "quarantined_share_within_limit"
FEEDBACK_IDENTITY_COLUMNS: tuple[str, ...] = (
    "event_id", "device_id", "hardware_rev", "model_version", "ts", "predicted_label", "review_label", "inference_ms",
)


class FeedbackValidationConfig(dg.Config):
    max_quarantined_share: float = 0.05


def feedback_upload_uri(landing_zone: LandingZoneResource, context: dg.AssetExecutionContext) -> str:
    """The upload the sensor saw for this batch (from the run's tags); for a run launched by hand, the
    newest upload of `<batch_id>.parquet` in the landing zone."""
    tagged = context.run.tags.get("fleetml/feedback_file")
    if tagged:
        # A run tag is input from outside: it may only name this batch's upload under a day prefix.
        expected = re.compile(rf"{FEEDBACK_SOURCE}/date=\d{{4}}-\d{{2}}-\d{{2}}/{re.escape(context.partition_key)}\.parquet")
        if not expected.fullmatch(tagged):
            raise dg.Failure(f"run tag fleetml/feedback_file={tagged!r} is not {expected.pattern}")
        return join_uri(landing_zone.landing_root, tagged)
    name = f"{context.partition_key}.parquet"
    found = [listed for listed in landing_zone.lister(FEEDBACK_SOURCE).list_uploads(None) if listed.key.endswith(f"/{name}")]
    if not found:
        raise dg.Failure(f"no upload {name} under {landing_zone.source_uri(FEEDBACK_SOURCE)}/date=*/")
    return landing_zone.source_uri(FEEDBACK_SOURCE, max(found).key)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            EDGE_FEEDBACK_KEY,
            group_name="edge_feedback",
            kinds={"parquet", "great_expectations"},
            code_version="1",
            description="One device upload batch of edge feedback (scores, decisions, latency, review labels "
            "and raw windows), validated row by row with great-expectations like telemetry.",
        ),
        dg.AssetSpec(
            FEEDBACK_ROW_QUARANTINE_KEY,
            group_name="edge_feedback",
            kinds={"parquet"},
            code_version="1",
            description="Rows of a feedback batch that failed validation, with every rule each broke.",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            FEEDBACK_SHARE_CHECK,
            asset=EDGE_FEEDBACK_KEY,
            blocking=True,
            description="The batch has valid rows and its quarantined share is under the limit.",
        )
    ],
    partitions_def=feedback_batches,
)
def edge_feedback(
    context: dg.AssetExecutionContext, config: FeedbackValidationConfig, lake: LakeResource, landing_zone: LandingZoneResource
):
    """Read the batch the sensor registered (checking it is still the bytes the sensor hashed),
    conform it to the feedback contract and validate every row."""
    import pandas as pd
    import pyarrow as pa

    from assets.feedback_expectations import validate_feedback_batch
    from assets.live_metrics import new_reviewed_events
    from edge_packaging.feedback_contract import FEEDBACK_SCHEMA, conform_to_feedback_contract
    from edge_packaging.telemetry_contract import HARSH_EVENT_CLASSES, nullable
    from resources.landing_zone import UnreadableUpload, read_upload

    uri = feedback_upload_uri(landing_zone, context)
    try:
        upload = read_upload(uri, conform_to_feedback_contract)
    except UnreadableUpload as reason:
        # The sensor judged the footer only; what the full read refuses is kept as evidence, once.
        moved = landing_zone.quarantine(uri, FEEDBACK_SOURCE, str(reason), run_id=context.run.run_id)
        raise dg.Failure(f"{uri} quarantined to {moved.quarantined_path}: {reason}") from None
    expected_sha256 = context.run.tags.get("fleetml/feedback_sha256")
    if expected_sha256 and upload.sha256 != expected_sha256:
        raise dg.Failure(
            f"{uri} changed since the sensor registered it ({expected_sha256[:12]}); the new version has its own run"
        )
    raw = upload.table.to_pandas()
    outcome = validate_feedback_batch(raw, HARSH_EVENT_CLASSES)
    quarantine_schema = nullable(FEEDBACK_SCHEMA).append(pa.field("quarantine_reason", pa.string()))
    partition = context.partition_key
    valid = lake.write_table(EDGE_FEEDBACK_KEY.path, partition, pa.Table.from_pandas(outcome.valid, schema=FEEDBACK_SCHEMA, preserve_index=False))
    quarantined = lake.write_table(
        FEEDBACK_ROW_QUARANTINE_KEY.path, partition, pa.Table.from_pandas(outcome.quarantined, schema=quarantine_schema, preserve_index=False)
    )
    reviewed = int(outcome.valid["review_label"].notna().sum())
    earlier_reviews = [
        lake.read_table(EDGE_FEEDBACK_KEY.path, batch, columns=["device_id", "event_id", "review_label"]).to_pandas()
        for batch in lake.stored_partitions(EDGE_FEEDBACK_KEY.path)
        if batch != partition
    ]
    new_reviewed = new_reviewed_events(
        outcome.valid,
        pd.concat(earlier_reviews, ignore_index=True) if earlier_reviews else outcome.valid.iloc[0:0],
    )
    yield dg.MaterializeResult(
        asset_key=EDGE_FEEDBACK_KEY,
        metadata={
            "dagster/row_count": valid.rows,
            "uri": dg.MetadataValue.path(valid.uri),
            "source_file": uri,
            "rows_in": len(raw),
            "rows_quarantined": quarantined.rows,
            "reviewed_rows": reviewed,
            "new_reviewed_rows": new_reviewed,
            "model_versions": sorted(outcome.valid["model_version"].unique().tolist()),
            "hardware_revs": sorted(outcome.valid["hardware_rev"].unique().tolist()),
        },
    )
    yield dg.MaterializeResult(
        asset_key=FEEDBACK_ROW_QUARANTINE_KEY,
        metadata={"dagster/row_count": quarantined.rows, "uri": dg.MetadataValue.path(quarantined.uri)},
    )
    yield quarantined_share_check(FEEDBACK_SHARE_CHECK, EDGE_FEEDBACK_KEY, outcome, config.max_quarantined_share)


def build_feedback_features_asset(spec_name: str) -> dg.AssetsDefinition:
    key = dg.AssetKey([spec_name, "feedback_features"])

    @dg.asset(
        key=key,
        deps=[EDGE_FEEDBACK_KEY],
        partitions_def=feedback_batches,
        group_name=spec_name,
        kinds={"parquet", "numpy"},
        code_version="1",
    )
    def feedback_features(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        """The model's features of every valid feedback window, by the same definition as training and
        the device: the input of drift measurement, and (with review labels) of retraining."""
        from assets.feature_engines import compute_features_pandas

        table = lake.read_table(EDGE_FEEDBACK_KEY.path, context.partition_key)
        stored = lake.write_table(key.path, context.partition_key, compute_features_pandas(table, FEEDBACK_IDENTITY_COLUMNS))
        return dg.MaterializeResult(metadata={"dagster/row_count": stored.rows, "uri": dg.MetadataValue.path(stored.uri)})

    return feedback_features
