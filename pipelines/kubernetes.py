"""What the production Kubernetes pods are: the one image, the secrets they read, and the CPU and
memory each kind of step asks for.

Dagster-free on purpose: the asset modules import the step tags, the Helm values, the KubeRay and
Spark configs and the deploy tests read the same constants, so an image tag or a secret name is
changed in one place and cannot drift between them. The tags are read by dagster-k8s's
`k8s_job_executor` only in production; locally they are inert metadata.
"""

from typing import Any

FLEETML_IMAGE_REPOSITORY = "ghcr.io/fleetml/fleetml"
# The project version from pyproject.toml (a deploy test keeps them equal): one release, one tag.
FLEETML_IMAGE_TAG = "0.1.0"
FLEETML_IMAGE = f"{FLEETML_IMAGE_REPOSITORY}:{FLEETML_IMAGE_TAG}"
# deploy/docker/Dockerfile installs the project into this virtualenv; Spark and Ray workers run it.
IMAGE_PYTHON = "/opt/venv/bin/python"

# Namespace of the Helm release: run and step jobs, RayJobs and Spark executors all live there.
K8S_NAMESPACE = "fleetml"

# Secrets created by the operator before the chart is installed (README.md, "Deploying"), never by us.
S3_SECRET = "fleetml-s3"
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
SIGNING_SECRET = "fleetml-signing"
SIGNING_SECRET_KEYS = ("FLEETML_SIGNING_KEY", "FLEETML_SIGNING_PUBLIC_KEY")
POSTGRES_SECRET = "fleetml-postgresql"

K8S_CONFIG_TAG = "dagster-k8s/config"  # dagster_k8s.job.USER_DEFINED_K8S_CONFIG_KEY


def k8s_step_tags(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> dict[str, Any]:
    """Op tags that give a step's Kubernetes pod these requests and limits.

    Requests are what the scheduler reserves, limits what the container may burst to; memory limits
    are set because an out-of-memory step should fail alone rather than evict its neighbours.
    """
    return {
        K8S_CONFIG_TAG: {
            "container_config": {
                "resources": {
                    "requests": {"cpu": cpu, "memory": memory},
                    "limits": {"cpu": cpu_limit, "memory": memory_limit},
                }
            }
        }
    }


# Every step without a tag (ingestion, validation, evaluation, export, bundle): the run launcher's
# default resources in deploy/helm/values.yaml, which dagster-k8s applies to run and step pods alike.
K8S_LIGHT_STEP = k8s_step_tags(cpu="500m", memory="1Gi", cpu_limit="1", memory_limit="2Gi")
# The sweep runs on the KubeRay cluster; the step pod is its Ray client and holds the dataset arrays.
K8S_TRAINING_STEP = k8s_step_tags(cpu="1", memory="4Gi", cpu_limit="2", memory_limit="8Gi")
# The Spark driver (client mode, inside the step pod) or the in-process pandas engine on one day.
K8S_SPARK_STEP = k8s_step_tags(cpu="1", memory="4Gi", cpu_limit="2", memory_limit="6Gi")
# Whole-history pandas work: the training dataset joins every day, the drift report runs evidently.
K8S_BATCH_STEP = k8s_step_tags(cpu="1", memory="4Gi", cpu_limit="2", memory_limit="8Gi")
