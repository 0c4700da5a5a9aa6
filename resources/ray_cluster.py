"""A local Ray cluster through dagster-ray's `LocalRay`, imported when a step that needs Ray starts."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg


class LocalRayOnDemand(dg.ConfigurableResource):
    """Delegates the whole lifecycle (create, connect, clean up) to dagster-ray's `LocalRay`.

    Declaring `LocalRay` itself would import dagster-ray (about 0.15 s, with its executor and run
    launcher) in every process that loads the code location, though only the training step uses Ray.
    Production declares dagster-ray's `KubeRayCluster` directly under the same resource key.
    """

    ray_init_options: dict[str, Any] = {}

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator[Any]:
        from dagster_ray import LocalRay

        with LocalRay(ray_init_options=self.ray_init_options).yield_for_execution(context) as cluster:
            yield cluster
