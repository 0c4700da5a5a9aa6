"""The production Spark configuration of the `pyspark` resource.

The driver runs in client mode inside the `window_features` step pod (sized by `K8S_SPARK_STEP`), so
Dagster sees the job and its logs. Executors run the fleetml image either way, so their Python and
numpy are the driver's and the features are computed by the same `edge_packaging.features` code:

- `spark://host:7077`, a standalone cluster whose master and workers are started from this image
  (`spark-class org.apache.spark.deploy.master.Master` / `...worker.Worker`, with pyspark's bundled
  Spark and the image's JRE). Executors inherit the worker pod's environment, so the workers take
  the S3 Secret with `envFrom`; nothing secret passes through the Spark config.
- `k8s://https://<api server>`, Spark on Kubernetes: the driver starts executor pods of `image` itself
  and injects the S3 credentials with `secretKeyRef` (Secret name and key, never the value). This
  needs an image whose entrypoint understands Spark's `executor` command (Spark's own
  `entrypoint.sh`), and RBAC for the step pod to create pods; the fleetml image does not ship that
  entrypoint, so production uses the standalone cluster (README.md, "Deploying").

Executors read the lake's Parquet with pyarrow and the standard AWS variables, so no `s3a` settings
(and no keys) are configured here.
"""

from pipelines.kubernetes import IMAGE_PYTHON, K8S_NAMESPACE, S3_SECRET, S3_SECRET_KEYS


def production_spark_config(master: str, image: str) -> dict[str, str]:
    """Spark settings for a `spark://` standalone or a `k8s://` master; `image` is the executor image
    on Kubernetes (the standalone workers already run it)."""
    config = {
        "spark.master": master,
        "spark.app.name": "fleetml",
        "spark.submit.deployMode": "client",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Workers start Python from this path: the image's virtualenv, the same as the driver's.
        "spark.pyspark.python": IMAGE_PYTHON,
        "spark.pyspark.driver.python": IMAGE_PYTHON,
        "spark.ui.showConsoleProgress": "false",
        # Within K8S_SPARK_STEP's 6Gi limit, leaving room for the Python side of the driver.
        "spark.driver.memory": "2g",
        "spark.executor.memory": "2g",
        "spark.executor.cores": "1",
        "spark.sql.shuffle.partitions": "16",
    }
    if master.startswith("k8s://"):
        config |= {
            "spark.kubernetes.container.image": image,
            "spark.kubernetes.container.image.pullPolicy": "IfNotPresent",
            "spark.kubernetes.namespace": K8S_NAMESPACE,
            "spark.executor.instances": "2",
            "spark.kubernetes.executor.request.cores": "1",
            "spark.kubernetes.executor.limit.cores": "1",
        }
        config |= {
            f"spark.kubernetes.executor.secretKeyRef.{key}": f"{S3_SECRET}:{key}" for key in S3_SECRET_KEYS
        }
    elif not master.startswith("spark://"):
        raise ValueError(f"production Spark needs a spark:// or k8s:// master, got {master!r}")
    return config
