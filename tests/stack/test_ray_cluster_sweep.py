"""The training sweep runs on a Ray cluster reached by address, through `RayClusterByAddress`."""

import os

import dagster as dg
import numpy as np
import pytest

from assets.training_sweep import fit_and_score, parameter_grid, run_sweep_on_ray
from resources.ray_cluster import RayClusterByAddress
from stack.local_stack import LocalStack

pytestmark = [pytest.mark.stack, pytest.mark.slow]  # real servers take seconds to start
SEED = 7


def seeded_dataset() -> tuple[np.ndarray, ...]:
    """Three classes separated by two of eight features, with label noise: scores differ by config."""
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(600, 8)).astype(np.float32)
    y = np.where(x[:, 0] > 0.5, 2, np.where(x[:, 1] > 0, 1, 0))
    flipped = rng.random(600) < 0.1
    y[flipped] = rng.integers(0, 3, flipped.sum())
    return x[:400], y[:400], x[400:], y[400:]


def test_the_sweep_runs_in_the_cluster_workers_and_matches_a_local_run(local_stack: LocalStack):
    import ray

    def where_am_i() -> tuple[int, str]:
        """Defined here, so cloudpickle ships it by value (the cluster cannot import test modules)."""
        return os.getpid(), ray.get_runtime_context().get_node_id()

    data = seeded_dataset()
    grid = parameter_grid([0.1, 0.3], [7, 15], [0.0], max_iter=30)
    local_scores = [fit_and_score(params, SEED, *data).validation_macro_f1 for params in grid]

    resource = RayClusterByAddress(
        address=local_stack.ray.address, ray_init_options={"logging_level": "WARNING"}
    )
    with dg.build_resources({"ray_cluster": resource}) as resources:
        assert resources.ray_cluster.ray_address == local_stack.ray.address
        assert ray.util.client.ray.is_connected(), "the resource should connect through Ray Client"
        results = run_sweep_on_ray(grid, SEED, *data)
        worker_pid, node_id = ray.get(ray.remote(where_am_i).remote())
        cluster_pids = local_stack.ray.pids()  # while connected: a job's workers exit with it
    assert not ray.is_initialized(), "the resource disconnects when the step ends"

    assert worker_pid != os.getpid()
    assert worker_pid in cluster_pids, "the task ran in a worker of the stack's Ray head"
    assert len(node_id) == 56
    assert [result.params for result in results] == grid
    assert [result.validation_macro_f1 for result in results] == local_scores
    assert len(set(local_scores)) > 1, "the dataset should tell the configurations apart"
