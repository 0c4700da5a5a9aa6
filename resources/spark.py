"""Spark through dagster-pyspark, started only when an asset actually asks for a session."""

import os
from typing import Any

from dagster_pyspark import PySparkResource
from dagster_pyspark.resources import spark_session_from_config


class LazyPySparkResource(PySparkResource):
    """`PySparkResource` that starts its session on first use instead of at step start-up.

    The stock resource starts Spark (about 10 s and a JVM) for every step that declares it, even when
    the step's config picked the in-process engine; this one pays only when `spark_session` is read.
    """

    def setup_for_execution(self, context: Any) -> None:  # noqa: ARG002 - signature fixed by Dagster
        return None

    @property
    def spark_session(self) -> Any:
        if self._spark_session is None:
            # Python workers are started from PYSPARK_PYTHON; the conf key alone is not always honoured.
            worker_python = self.spark_config.get("spark.pyspark.python")
            if worker_python:
                os.environ["PYSPARK_PYTHON"] = worker_python
            self._spark_session = spark_session_from_config(self.spark_config)
        return self._spark_session


def local_spark_config(python_executable: str) -> dict[str, str]:
    """A two-core local Spark whose Python workers run the same interpreter as the driver."""
    return {
        "spark.master": "local[2]",
        "spark.app.name": "fleetml",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.memory": "4g",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.pyspark.python": python_executable,
        "spark.pyspark.driver.python": python_executable,
    }
