import sys
from pathlib import Path

import pytest

from resources.lake import LakeResource
from resources.landing_zone import LandingZoneResource
from resources.spark import SparkResource, local_spark_config


@pytest.fixture
def platform_resources(tmp_path: Path) -> dict:
    """The local resource set, rooted in a temporary FLEETML_HOME."""
    return {
        "lake": LakeResource(uri=str(tmp_path / "lake")),
        "landing_zone": LandingZoneResource(
            landing_root=str(tmp_path / "landing"), quarantine_root=str(tmp_path / "quarantine")
        ),
        "pyspark": SparkResource(spark_config=local_spark_config(sys.executable)),
    }
