"""Spark through dagster-pyspark's `PySparkResource`, imported and started only when an asset asks
for a session."""

import os
from typing import Any

import dagster as dg
from pydantic import PrivateAttr


class SparkResource(dg.ConfigurableResource):
    """Holds the Spark config; builds dagster-pyspark's `PySparkResource` on first `spark_session`.

    Declaring `PySparkResource` itself would import pyspark whenever the code location loads (about
    0.14 s in every process: code server, each run, each step) and start Spark in every step that
    declares it, even when its config picked the in-process engine.
    """

    spark_config: dict[str, Any]
    _context: Any = PrivateAttr(default=None)
    _pyspark: Any = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._context = context

    @property
    def spark_session(self) -> Any:
        if self._pyspark is None:
            from dagster_pyspark import PySparkResource

            # Python workers are started from PYSPARK_PYTHON; the conf key alone is not always honoured.
            worker_python = self.spark_config.get("spark.pyspark.python")
            if worker_python:
                os.environ["PYSPARK_PYTHON"] = worker_python
            pyspark = PySparkResource(spark_config=self.spark_config)
            pyspark.setup_for_execution(self._context)
            self._pyspark = pyspark
        return self._pyspark.spark_session


def _common_spark_config(python_executable: str) -> dict[str, str]:
    """What every fleetml Spark session sets: UTC, Arrow transfers, and Python workers running the
    driver's interpreter (the workers import the project's modules)."""
    return {
        "spark.app.name": "fleetml",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.pyspark.python": python_executable,
        "spark.pyspark.driver.python": python_executable,
    }


def local_spark_config(python_executable: str) -> dict[str, str]:
    """A two-core local Spark whose Python workers run the same interpreter as the driver."""
    return {
        **_common_spark_config(python_executable),
        "spark.master": "local[2]",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.driver.memory": "4g",
    }


def cluster_spark_config(
    master_url: str, python_executable: str, driver_host: str | None = None
) -> dict[str, str]:
    """A Spark standalone cluster at `master_url` (`spark://host:port`) with 1 GB executors.

    `driver_host` is the address executors call back on; set it when the machine's default address
    is not reachable from them (127.0.0.1 for the one-machine stack of `python -m stack`).
    """
    config = {
        **_common_spark_config(python_executable),
        "spark.master": master_url,
        "spark.executor.memory": "1g",
    }
    if driver_host:
        config |= {"spark.driver.host": driver_host, "spark.driver.bindAddress": driver_host}
    return config
