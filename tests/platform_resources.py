"""The resource sets tests root in a temporary home or store, in one place.

`store_resources` takes a local folder or an S3 prefix alike; `home_resources` is the whole local set
of `pipelines.environment` (without the alert sink) under one folder.
"""

import sys
from pathlib import Path

from resources.filesystems import join_uri


def store_resources(root: str) -> dict:
    """The lake, the landing zone with its quarantine, and a local Spark, under `root`."""
    from resources.lake import LakeResource
    from resources.landing_zone import LandingZoneResource
    from resources.spark import SparkResource, local_spark_config

    return {
        "lake": LakeResource(uri=join_uri(root, "lake")),
        "landing_zone": LandingZoneResource(
            landing_root=join_uri(root, "landing"), quarantine_root=join_uri(root, "quarantine")
        ),
        "pyspark": SparkResource(spark_config=local_spark_config(sys.executable)),
    }


def home_resources(home: Path) -> dict:
    """Every local resource but the alert sink, rooted at `home`."""
    from pipelines.environment import LOCAL_RAY_INIT_OPTIONS
    from resources.artifact_store import ArtifactStoreResource
    from resources.json_refs import JsonRefIOManager
    from resources.model_registry import ModelRegistryResource
    from resources.ray_cluster import LocalRayOnDemand
    from resources.signing_keys import SigningKeyResource

    return {
        **store_resources(str(home)),
        "ray_cluster": LocalRayOnDemand(ray_init_options=LOCAL_RAY_INIT_OPTIONS),
        "registry": ModelRegistryResource(uri=str(home / "registry")),
        "artifacts": ArtifactStoreResource(uri=str(home / "artifacts")),
        "signing_key": SigningKeyResource(dev_key_dir=str(home / "keys")),
        "ref_io_manager": JsonRefIOManager(uri=str(home / "refs")),
    }
