"""The one place that decides the environment (`FLEETML_ENV=local|prod`) and the resources it gets.

Local (the default) keeps everything under `FLEETML_HOME`: a file lake, the landing zone, the model
registry, artifacts, a generated dev signing key, a two-core local Spark and a local Ray, and an
in-process executor so small runs do not re-import the code location per step. Production reads its
locations and secrets from the environment (`dg.EnvVar`), runs each step in its own Kubernetes job,
and talks to a Spark cluster and a KubeRay cluster.
"""

import os
import sys
from pathlib import Path
from typing import Any, Literal

import dagster as dg

from resources.alert_sink import AlertSinkResource
from resources.artifact_store import ArtifactStoreResource
from resources.json_refs import JsonRefIOManager
from resources.lake import LakeResource
from resources.landing_zone import LandingZoneResource
from resources.model_registry import ModelRegistryResource
from resources.ray_cluster import LocalRayOnDemand, RayClusterByAddress
from resources.signing_keys import SigningKeyResource
from resources.spark import SparkResource, cluster_spark_config, local_spark_config

Environment = Literal["local", "prod"]
ENVIRONMENTS: tuple[Environment, ...] = ("local", "prod")


def current_environment() -> Environment:
    value = os.environ.get("FLEETML_ENV", "local")
    if value not in ENVIRONMENTS:
        raise ValueError(f"FLEETML_ENV must be one of {', '.join(ENVIRONMENTS)}, got {value!r}")
    return value  # type: ignore[return-value]


def fleetml_home() -> Path:
    """Root of local state: landing zone, quarantine, lake, models, keys and the Dagster instance."""
    return Path(os.environ.get("FLEETML_HOME", ".fleetml")).resolve()


LOCAL_RAY_INIT_OPTIONS = {
    "num_cpus": 2,
    "include_dashboard": False,
    "log_to_driver": False,
    "logging_level": "WARNING",
}


def _local_resources() -> dict[str, Any]:
    home = fleetml_home()
    return {
        "lake": LakeResource(uri=os.environ.get("FLEETML_LAKE_URI", str(home / "lake"))),
        "landing_zone": LandingZoneResource(
            landing_root=str(home / "landing"), quarantine_root=str(home / "quarantine")
        ),
        "pyspark": SparkResource(spark_config=local_spark_config(sys.executable)),
        "ray_cluster": LocalRayOnDemand(ray_init_options=LOCAL_RAY_INIT_OPTIONS),
        "registry": ModelRegistryResource(uri=os.environ.get("FLEETML_REGISTRY_URI", str(home / "registry"))),
        "artifacts": ArtifactStoreResource(uri=str(home / "artifacts")),
        "signing_key": SigningKeyResource(dev_key_dir=str(home / "keys")),
        "ref_io_manager": JsonRefIOManager(uri=str(home / "refs")),
        "alert_sink": AlertSinkResource(log_path=str(home / "alerts" / "alerts.jsonl"), webhook_url=_alert_webhook()),
    }


def _prod_resources() -> dict[str, Any]:
    """Stores on object storage (URIs from the environment; S3 credentials are the standard AWS
    variables every S3 client reads), a Ray cluster and a Spark cluster. Checked at load by the preflight."""
    from pipelines.preflight import check_production_environment

    check_production_environment()
    return {
        "ray_cluster": _production_ray(),
        "registry": ModelRegistryResource(uri=dg.EnvVar("FLEETML_REGISTRY_URI")),
        "artifacts": ArtifactStoreResource(uri=dg.EnvVar("FLEETML_ARTIFACTS_URI")),
        "signing_key": SigningKeyResource(
            private_key_pem=dg.EnvVar("FLEETML_SIGNING_KEY"),
            private_key_passphrase=_optional_env("FLEETML_SIGNING_KEY_PASSPHRASE"),
            public_key_pem=dg.EnvVar("FLEETML_SIGNING_PUBLIC_KEY"),
        ),
        "ref_io_manager": JsonRefIOManager(uri=dg.EnvVar("FLEETML_REFS_URI")),
        "alert_sink": AlertSinkResource(log_path=dg.EnvVar("FLEETML_ALERT_LOG"), webhook_url=_alert_webhook()),
        "lake": LakeResource(uri=dg.EnvVar("FLEETML_LAKE_URI")),
        "landing_zone": LandingZoneResource(
            landing_root=dg.EnvVar("FLEETML_LANDING_ROOT"),
            quarantine_root=dg.EnvVar("FLEETML_QUARANTINE_ROOT"),
        ),
        "pyspark": SparkResource(spark_config=_production_spark_config()),
    }


def _production_ray() -> Any:
    """A Ray cluster that already runs, by address (`FLEETML_RAY_ADDRESS=ray://head:10001`), or else
    one KubeRay cluster per run through dagster-ray."""
    if os.environ.get("FLEETML_RAY_ADDRESS"):
        return RayClusterByAddress(address=dg.EnvVar("FLEETML_RAY_ADDRESS"))
    from pipelines.production_ray import kuberay_resource

    return kuberay_resource()


def _production_spark_config() -> dict[str, str]:
    """The Spark cluster at `FLEETML_SPARK_MASTER`: Spark on Kubernetes (`k8s://`) with executors of
    the fleetml image, or a standalone cluster (`spark://`) whose workers run the same Python."""
    master = os.environ.get("FLEETML_SPARK_MASTER", "spark://spark-master:7077")
    if master.startswith("k8s://"):
        from pipelines.kubernetes import FLEETML_IMAGE
        from pipelines.production_spark import production_spark_config

        return production_spark_config(master, FLEETML_IMAGE)
    return cluster_spark_config(
        master,
        os.environ.get("FLEETML_SPARK_PYTHON", sys.executable),
        driver_host=os.environ.get("FLEETML_SPARK_DRIVER_HOST"),
    )


def _optional_env(name: str) -> Any:
    """`dg.EnvVar(name)` when the variable is set (read at run time, never stored), else None."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def _alert_webhook() -> Any:
    """`FLEETML_ALERT_WEBHOOK` when it is set, else no webhook."""
    return _optional_env("FLEETML_ALERT_WEBHOOK")


def schedule_status_for(environment: Environment) -> dg.DefaultScheduleStatus:
    """Nightly ingestion runs by itself in production; locally the demo decides what is ingested."""
    return dg.DefaultScheduleStatus.RUNNING if environment == "prod" else dg.DefaultScheduleStatus.STOPPED


def resources_for(environment: Environment) -> dict[str, Any]:
    return {"local": _local_resources, "prod": _prod_resources}[environment]()


def executor_for(environment: Environment) -> dg.ExecutorDefinition:
    """In-process locally (a step costs no re-import); one Kubernetes job per step in production.

    `FLEETML_EXECUTOR=multiprocess` runs production's steps as local processes instead: the one
    machine stack (`python -m stack`) has every production server but Kubernetes.
    """
    if environment == "prod":
        if os.environ.get("FLEETML_EXECUTOR") == "multiprocess":
            return dg.multiprocess_executor
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    return dg.in_process_executor
