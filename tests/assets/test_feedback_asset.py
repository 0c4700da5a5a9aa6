"""The `edge_feedback` asset reads only the upload its run names, and keeps what it refuses."""

import datetime as dt
import io
import json

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feedback_uploads import feedback_table
from hostile_uploads import dictionary_bomb

from assets.feedback import edge_feedback
from assets.partitions import feedback_batches
from resources.lake import LakeResource
from resources.landing_zone import SIDECAR_SUFFIX, LandingZoneResource

BATCH = "fb-vg-r3-20261108-abcdef012345"
DAY = dt.date(2026, 12, 1)


def run_batch(tmp_path, tags: dict[str, str]) -> dg.ExecuteInProcessResult:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(feedback_batches.name, [BATCH])
    resources = {
        "lake": LakeResource(uri=str(tmp_path / "lake")),
        "landing_zone": LandingZoneResource(landing_root=str(tmp_path / "landing"), quarantine_root=str(tmp_path / "quarantine")),
    }
    return dg.materialize([edge_feedback], partition_key=BATCH, tags=tags, resources=resources, instance=instance, raise_on_error=False)


def land(tmp_path, data: bytes) -> str:
    path = tmp_path / "landing" / "edge_feedback" / f"date={DAY}" / f"{BATCH}.parquet"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return f"edge_feedback/date={DAY}/{BATCH}.parquet"


@pytest.mark.parametrize(
    "tag", ["/etc/passwd", "../../outside.parquet", "edge_feedback/../../x.parquet", "edge_feedback/date=2026-12-01/other.parquet"]
)
def test_a_run_tag_can_only_name_its_own_batch_under_a_day_prefix(tmp_path, tag):
    land(tmp_path, b"unused")
    result = run_batch(tmp_path, {"fleetml/feedback_file": tag})
    assert not result.success
    assert "is not edge_feedback/date=" in result.failure_data_for_node("edge_feedback").error.message


def test_the_run_reads_its_upload_and_quarantines_a_bomb_the_sensor_let_through(tmp_path):
    sink = io.BytesIO()
    pq.write_table(feedback_table(rows=3, seed=1), sink)
    tag = land(tmp_path, sink.getvalue())
    assert run_batch(tmp_path, {"fleetml/feedback_file": tag}).success

    (tmp_path / "landing" / tag).write_bytes(dictionary_bomb(rows=10_000))
    result = run_batch(tmp_path, {"fleetml/feedback_file": tag})

    assert not result.success
    assert not (tmp_path / "landing" / tag).exists()
    sidecar = tmp_path / "quarantine" / tag.replace(".parquet", f".parquet{SIDECAR_SUFFIX}")
    assert "over the limit of 256" in json.loads(sidecar.read_text())["reason"]


def test_reviews_re_sent_in_a_later_batch_are_not_new_labels(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    resources = {
        "lake": LakeResource(uri=str(tmp_path / "lake")),
        "landing_zone": LandingZoneResource(landing_root=str(tmp_path / "landing"), quarantine_root=str(tmp_path / "quarantine")),
    }
    reviewed = feedback_table(rows=4, seed=1).set_column(11, "review_label", pa.array(["benign"] * 4))
    new = {}
    for batch, table in (("fb-first", reviewed), ("fb-retry", pa.concat_tables([reviewed, feedback_table(rows=2, seed=9)]))):
        path = tmp_path / "landing" / "edge_feedback" / f"date={DAY}" / f"{batch}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        instance.add_dynamic_partitions(feedback_batches.name, [batch])
        result = dg.materialize([edge_feedback], partition_key=batch, resources=resources, instance=instance)
        metadata = result.asset_materializations_for_node("edge_feedback")[0].metadata
        new[batch] = (metadata["reviewed_rows"].value, metadata["new_reviewed_rows"].value)
    assert new == {"fb-first": (4, 4), "fb-retry": (4, 0)}
