"""The production Spark configuration: a real cluster master, the image's Python, Arrow and UTC, and
no secret value in any setting."""

import re

import pytest

from pipelines.kubernetes import FLEETML_IMAGE, IMAGE_PYTHON, S3_SECRET, S3_SECRET_KEYS
from pipelines.production_spark import production_spark_config

STANDALONE = "spark://fleetml-spark-master.fleetml.svc.cluster.local:7077"
KUBERNETES = "k8s://https://kubernetes.default.svc:443"


@pytest.fixture(params=[STANDALONE, KUBERNETES], ids=["standalone", "kubernetes"])
def config(request) -> dict[str, str]:
    return production_spark_config(request.param, FLEETML_IMAGE)


def test_the_master_is_a_cluster_and_the_driver_runs_in_the_step(config):
    assert re.match(r"^(spark|k8s)://", config["spark.master"])
    assert config["spark.submit.deployMode"] == "client"


def test_workers_run_the_images_python_with_arrow_in_utc(config):
    assert config["spark.pyspark.python"] == IMAGE_PYTHON
    assert config["spark.pyspark.driver.python"] == IMAGE_PYTHON
    assert config["spark.sql.execution.arrow.pyspark.enabled"] == "true"
    assert config["spark.sql.session.timeZone"] == "UTC"


def test_every_value_is_a_string(config):
    assert all(isinstance(value, str) for value in config.values())


def test_no_setting_carries_a_credential(config):
    """Secrets reach executors only by reference (Secret name and key), and the lake needs no s3a."""
    for key, value in config.items():
        assert not re.search(r"s3a|access\.key|secret\.key|password|token", key, re.IGNORECASE), key
        if key.startswith("spark.kubernetes.executor.secretKeyRef."):
            assert value == f"{S3_SECRET}:{key.rsplit('.', 1)[1]}"
        else:
            assert not re.search(r"AKIA|-----BEGIN|:[^/@\s]+@", value), key


def test_kubernetes_executors_run_this_image_with_the_s3_secret_by_reference():
    config = production_spark_config(KUBERNETES, FLEETML_IMAGE)
    assert config["spark.kubernetes.container.image"] == FLEETML_IMAGE
    for key in S3_SECRET_KEYS:
        assert config[f"spark.kubernetes.executor.secretKeyRef.{key}"] == f"{S3_SECRET}:{key}"


def test_standalone_sets_no_kubernetes_settings():
    assert not [
        key
        for key in production_spark_config(STANDALONE, FLEETML_IMAGE)
        if key.startswith("spark.kubernetes.")
    ]


@pytest.mark.parametrize("master", ["local[2]", "yarn", "spark-master:7077"])
def test_a_master_that_is_not_a_cluster_is_refused(master):
    with pytest.raises(ValueError, match="spark:// or k8s://"):
        production_spark_config(master, FLEETML_IMAGE)
