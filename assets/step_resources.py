"""The CPU and memory each kind of step asks for when it runs as its own Kubernetes pod.

The asset decorators carry these as `dagster-k8s/config` op tags: dagster-k8s's `k8s_job_executor`
reads them in production; locally they are inert metadata. Dagster-free, and beside the assets because
what a step needs follows from what its asset computes.
"""

from typing import Any

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

SIGNING_SECRET = "fleetml-signing"
"""The Kubernetes Secret holding FLEETML_SIGNING_KEY (and its passphrase and public key)."""
# The one step that signs (the edge bundle) gets the signing secret in its pod alone: the code server
# that runs the sensors, the run workers and every other step never hold the private key.
K8S_SIGNING_STEP = {
    K8S_CONFIG_TAG: {
        "container_config": {
            **K8S_LIGHT_STEP[K8S_CONFIG_TAG]["container_config"],
            "env_from": [{"secret_ref": {"name": SIGNING_SECRET}}],
        }
    }
}
