"""The production Ray resource: one KubeRay `RayJob` per step that asks for Ray.

dagster-ray's `KubeRayInteractiveJob` is its recommended production resource: it creates a RayJob in
interactive mode, waits for the RayCluster KubeRay starts for it, connects through Ray Client and binds
the RayJob to the client's job id, so KubeRay deletes the cluster when the step's Ray job ends (or
after `active_deadline_seconds`). Nothing outlives a step, so no cleanup sensor is needed (that is
`KubeRayCluster`'s companion). The head and workers run the code location's own image, so the Ray
client in the step pod and the cluster share Ray and Python versions (Ray Client requires both).

dagster-ray is imported inside the function: the code location must load without it (a test guards
the heavy imports of `pipelines.definitions`).
"""

import importlib.metadata
from typing import Any

from pipelines.kubernetes import FLEETML_IMAGE, K8S_NAMESPACE, S3_SECRET

# Requests equal limits: Ray sizes its scheduler from them and the pods get Guaranteed QoS.
RAY_HEAD_RESOURCES = {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"cpu": "1", "memory": "4Gi"}}
RAY_WORKER_RESOURCES = {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"cpu": "2", "memory": "8Gi"}}
RAY_WORKER_REPLICAS = 2
# A sweep that has not finished in this time is stuck; KubeRay then deletes its cluster.
RAY_JOB_DEADLINE_S = 4 * 60 * 60


def _ray_pod_template(container_name: str, image: str, resources: dict[str, Any]) -> dict[str, Any]:
    """A Ray pod: the fleetml image, S3 credentials by reference (Ray tasks read the lake), and
    memory-backed /dev/shm so Ray's object store is not capped at the default 64 MiB.

    The signing Secret is deliberately absent: Ray pods fit models and never sign bundles.
    """
    return {
        "spec": {
            "containers": [
                {
                    "name": container_name,
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "resources": resources,
                    "envFrom": [{"secretRef": {"name": S3_SECRET}}],
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "allowPrivilegeEscalation": False,
                    },
                    "volumeMounts": [
                        {"mountPath": "/tmp/ray", "name": "ray-logs"},
                        {"mountPath": "/dev/shm", "name": "dshm"},
                    ],
                }
            ],
            "volumes": [
                {"name": "ray-logs", "emptyDir": {}},
                {"name": "dshm", "emptyDir": {"medium": "Memory"}},
            ],
        }
    }


def kuberay_resource(image: str = FLEETML_IMAGE) -> Any:
    """The `ray_cluster` resource of production: a `KubeRayInteractiveJob` in the release namespace.

    The head schedules no tasks (`num-cpus: 0`, KubeRay's production advice), so the sweep's tasks
    land on the fixed worker group; `rayVersion` is the Ray installed here, which is the Ray in the
    image because the code location runs from that image.
    """
    from dagster_ray.configs import RayDataExecutionOptions
    from dagster_ray.kuberay import KubeRayInteractiveJob, RayClusterSpec
    from dagster_ray.kuberay.resources.rayjob import InteractiveRayJobConfig, InteractiveRayJobSpec

    cluster = RayClusterSpec(
        ray_version=importlib.metadata.version("ray"),
        head_group_spec={
            "serviceType": "ClusterIP",
            "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
            "template": _ray_pod_template("ray-head", image, RAY_HEAD_RESOURCES),
        },
        worker_group_specs=[
            {
                "groupName": "sweep",
                "replicas": RAY_WORKER_REPLICAS,
                "minReplicas": RAY_WORKER_REPLICAS,
                "maxReplicas": RAY_WORKER_REPLICAS,
                "rayStartParams": {},
                "template": _ray_pod_template("ray-worker", image, RAY_WORKER_RESOURCES),
            }
        ],
    )
    return KubeRayInteractiveJob(
        image=image,
        deployment_name="prod",
        # Pulling the image onto fresh nodes comes first; 10 minutes is dagster-ray's default.
        timeout=900.0,
        ray_job=InteractiveRayJobConfig(
            metadata={"namespace": K8S_NAMESPACE},
            spec=InteractiveRayJobSpec(active_deadline_seconds=RAY_JOB_DEADLINE_S, ray_cluster_spec=cluster),
        ),
        # polars is not a dependency; Ray Data must not be told to use it.
        data_execution_options=RayDataExecutionOptions(use_polars=False),
    )
