"""Fixtures of the sensor tests: a landing zone on each kind of store and a way to upload into it."""

import datetime as dt
import io
from collections.abc import Callable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feedback_uploads import FEEDBACK_SOURCE, feedback_table

from resources.landing_zone import LandingZoneResource


@pytest.fixture
def landing_zone(store_root) -> LandingZoneResource:
    return LandingZoneResource(landing_root=store_root.join("landing"), quarantine_root=store_root.join("quarantine"))


@pytest.fixture
def upload_day() -> dt.date:
    """Uploads are keyed by the UTC day they arrive."""
    return dt.datetime.now(dt.timezone.utc).date()


@pytest.fixture
def upload_feedback(landing_zone: LandingZoneResource, store_root, upload_day) -> Callable[..., str]:
    """Land `landing/edge_feedback/date=<today>/<name>` whole: a table, or raw bytes for broken uploads.
    Returns the upload's URI."""

    def upload(name: str, content: pa.Table | bytes | None = None) -> str:
        if not isinstance(content, bytes):
            sink = io.BytesIO()
            pq.write_table(content if content is not None else feedback_table(), sink)
            content = sink.getvalue()
        return store_root.write(landing_zone.source_uri(FEEDBACK_SOURCE, f"date={upload_day}", name), content)

    return upload
