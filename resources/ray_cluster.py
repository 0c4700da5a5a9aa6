"""Ray for the training sweep through dagster-ray, imported only when a step that needs Ray starts.

Declaring a dagster-ray resource itself would import dagster-ray (about 0.15 s, with its executor and
run launcher) in every process that loads the code location, though only the training step uses Ray.
So these resources hold plain config and build the dagster-ray resource inside `yield_for_execution`.
"""

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
from pydantic import Field


class LocalRayOnDemand(dg.ConfigurableResource):
    """A local Ray cluster: delegates the whole lifecycle (create, connect, clean up) to dagster-ray's
    `LocalRay`.

    A process that already holds a local Ray runtime (`make demo` starts one for its two trainings,
    see `pipelines.demo_loop.local_ray_runtime`) lends it to the step: the step neither starts nor
    shuts it down, which saves the 3-4 s of starting and stopping Ray per run. A Ray Client
    connection is not a local runtime and is never borrowed.
    """

    ray_init_options: dict[str, Any] = {}

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator[Any]:
        from dagster_ray import LocalRay, Lifecycle

        if _holds_local_ray_runtime():
            context.log.info("using this process's running local Ray runtime, left running afterwards")
            lifecycle = Lifecycle(connect=False, cleanup="never")
        else:
            lifecycle = Lifecycle()
        local = LocalRay(ray_init_options=self.ray_init_options, lifecycle=lifecycle)
        with local.yield_for_execution(context) as cluster:
            yield cluster


def _holds_local_ray_runtime() -> bool:
    import ray

    return ray.is_initialized() and not ray.util.client.ray.is_connected()


class RayClusterByAddress(dg.ConfigurableResource):
    """A running Ray cluster reached through Ray Client at `address` (`ray://host:port`), e.g. a
    KubeRay head service or the head of `python -m stack`.

    dagster-ray 0.4.8 has no resource for an existing cluster by address (`LocalRay` ignores any
    address); this one is dagster-ray's `RayResource` told the host and client port, so connecting,
    `ray_init_options`, injected environment variables and disconnecting are dagster-ray's own.
    Nothing is created or deleted: the cluster outlives the run. Ray Client needs the same Ray and
    Python minor version on both sides.
    """

    address: str = Field(description="Ray Client address of the cluster, `ray://host:port`.")
    ray_init_options: dict[str, Any] = Field(
        default={}, description="Extra `ray.init()` arguments (runtime_env, logging_level, ...)."
    )

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator[Any]:
        parts = urlsplit(self.address)
        if parts.scheme != "ray" or not parts.hostname or not parts.port:
            raise ValueError(f"RayClusterByAddress needs a ray://host:port address, got {self.address!r}")
        import ray
        from dagster_ray import Lifecycle

        if ray.is_initialized():
            # A Ray Client connection made while this process already holds a Ray runtime (a local one
            # left by an earlier step or test) would send every task to that runtime, not the cluster.
            context.log.warning("shutting down this process's existing Ray runtime before connecting")
            ray.shutdown()

        cluster = _existing_ray_cluster_class()(
            cluster_host=parts.hostname,
            redis_port=parts.port,
            ray_init_options=self.ray_init_options,
            lifecycle=Lifecycle(cleanup="never"),  # disconnect only: the cluster is not ours to delete
        )
        with cluster.yield_for_execution(context) as connected:
            yield connected


@functools.cache
def _existing_ray_cluster_class() -> type:
    """dagster-ray's `RayResource` for a cluster that already runs, defined on first use so that
    loading the code location does not import dagster-ray."""
    from dagster_ray import RayResource

    class ExistingRayCluster(RayResource):
        """Mirrors `LocalRay`: created and ready from the start, so the lifecycle only connects.
        `RayResource.ray_address` builds `ray://{host}:{redis_port}`."""

        cluster_host: str = Field(description="Host of the cluster's Ray Client server.")

        @property
        def host(self) -> str:
            return self.cluster_host

        @property
        def name(self) -> str:
            return f"Ray cluster at {self.ray_address}"

        @property
        def created(self) -> bool:
            return True

        @property
        def ready(self) -> bool:
            return True

    return ExistingRayCluster
