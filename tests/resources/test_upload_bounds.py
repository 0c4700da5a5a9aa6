"""An upload may not cost more to read than its bounds allow, whatever its size on disk."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hostile_uploads import dictionary_bomb, parquet_bytes

from edge_packaging.feedback_contract import FEEDBACK_SCHEMA
from resources.landing_zone import UnreadableUpload, inspect_upload, parse_upload
from resources.upload_bounds import UploadBounds, UploadOverBounds, check_footer

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_dictionary_bomb_is_refused_before_its_strings_expand():
    data = dictionary_bomb()
    assert len(data) < 16 * 1024  # a few kilobytes on disk, about 6 GB of strings decoded
    with pytest.raises(UnreadableUpload, match="holds a value of 8192 bytes, over the limit of 256"):
        parse_upload(data, lambda table: table)


def test_rows_and_declared_decoded_size_are_bounded_from_the_footer():
    table = pa.table({"speed_kph": pa.array(range(11), pa.float32())})
    footer = pq.ParquetFile(pa.BufferReader(parquet_bytes(table)))
    assert check_footer(footer, 100, UploadBounds()) == 11
    with pytest.raises(UploadOverBounds, match="11 rows is over the limit of 10"):
        check_footer(footer, 100, UploadBounds(max_rows=10))
    with pytest.raises(UploadOverBounds, match="decodes to 44 bytes, over the limit of 40"):
        check_footer(footer, 100, UploadBounds(max_decoded_bytes=40))
    with pytest.raises(UploadOverBounds, match="upload of 100 bytes is over the limit of 99"):
        check_footer(footer, 100, UploadBounds(max_file_bytes=99))


def test_the_footer_alone_judges_the_contract():
    data = dictionary_bomb(rows=10)
    facts = inspect_upload(data, FEEDBACK_SCHEMA)
    assert facts.rows == 10 and facts.extra_columns == ()
    with pytest.raises(UnreadableUpload, match="missing column"):
        inspect_upload(parquet_bytes(pa.table({"event_id": ["a"]})), FEEDBACK_SCHEMA)


SENSOR_TICK = textwrap.dedent(
    """
    import resource, sys
    import dagster as dg
    from resources.landing_zone import LandingZoneResource
    from sensors.edge_feedback import build_edge_feedback_sensor

    partitions = dg.DynamicPartitionsDefinition(name="edge_feedback_batches")

    @dg.asset(partitions_def=partitions)
    def edge_feedback_probe() -> None: ...

    sensor = build_edge_feedback_sensor(dg.define_asset_job("edge_feedback_job", [edge_feedback_probe]), partitions)
    zone = LandingZoneResource(landing_root=sys.argv[1] + "/landing", quarantine_root=sys.argv[1] + "/quarantine")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources={"landing_zone": zone}) as context:
        result = sensor(context)
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(len(result.run_requests), grown_kb)
    """
)


def test_the_sensor_judges_a_bomb_from_its_footer_without_decoding_it(tmp_path):
    import datetime as dt

    day = dt.datetime.now(dt.timezone.utc).date()
    upload = tmp_path / "landing" / "edge_feedback" / f"date={day}" / "fb-bomb.parquet"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(dictionary_bomb(rows=100_000, value_bytes=2048))  # ~1.2 GB of strings decoded
    completed = subprocess.run(
        [sys.executable, "-c", SENSOR_TICK, str(tmp_path)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    requests, grown_kb = map(int, completed.stdout.split()[-2:])
    assert requests == 1  # the run's full read refuses it and quarantines it, off the sensor's tick
    assert grown_kb < 200 * 1024, f"the tick grew the sensor process by {grown_kb / 1024:.0f} MiB"
