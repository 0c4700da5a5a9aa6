"""Fixtures of the sensor tests: a landing zone in a temporary home and a way to upload into it."""

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
from feedback_uploads import FEEDBACK_SOURCE, feedback_table

from fleet_sim.landing import write_parquet_atomically
from resources.landing_zone import LandingZoneResource


@pytest.fixture
def landing_zone(tmp_path: Path) -> LandingZoneResource:
    return LandingZoneResource(landing_root=str(tmp_path / "landing"), quarantine_root=str(tmp_path / "quarantine"))


@pytest.fixture
def upload_feedback(landing_zone: LandingZoneResource) -> Callable[..., Path]:
    """Land `landing/edge_feedback/<name>` atomically: a table, or raw bytes for broken uploads."""

    def upload(name: str, content: pa.Table | bytes | None = None) -> Path:
        path = Path(landing_zone.landing_root, FEEDBACK_SOURCE, name)
        if isinstance(content, bytes):
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.with_name(f".{name}.tmp")
            temp.write_bytes(content)
            temp.replace(path)
            return path
        return write_parquet_atomically(content if content is not None else feedback_table(), path)

    return upload
