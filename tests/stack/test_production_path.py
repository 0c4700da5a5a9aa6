"""The production path end to end on real servers: S3 (SeaweedFS), PostgreSQL, a Ray cluster reached by
address and a Spark standalone cluster, with `FLEETML_ENV=prod`.

The README's CI commands run verbatim from telemetry to a verified bundle, with every store on S3 and
the Dagster instance on PostgreSQL; then a deployed bundle's feedback goes through the sensor to a
drift report. Only Kubernetes is absent: `FLEETML_EXECUTOR=multiprocess` replaces the k8s executor.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pyarrow.fs as pafs
import pytest
from test_readme import ci_commands

from edge_packaging.features import FEATURE_NAMES
from edge_packaging.signing import generate_private_key, private_key_to_pem, public_key_to_pem

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.stack, pytest.mark.slow]


def run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    completed = subprocess.run(["bash", "-c", command], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    assert completed.returncode == 0, f"{command}\n{completed.stdout[-3000:]}\n{completed.stderr[-6000:]}"
    return completed


def s3_keys(prefix: str) -> list[str]:
    """Every object under `s3://<prefix>` (the test process reaches the stack's S3 through its env)."""
    from resources.filesystems import filesystem_and_path

    fs, path = filesystem_and_path(f"s3://{prefix}")
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    return sorted(info.path for info in infos if info.type == pafs.FileType.File)


def test_ci_commands_and_the_feedback_loop_run_on_s3_postgres_ray_and_spark(
    local_stack, stack_environment, tmp_path, capsys
):
    started = time.perf_counter()
    home = tmp_path / "home"
    signing_key = generate_private_key()
    public_pem = public_key_to_pem(signing_key.public_key())
    (home / "keys").mkdir(parents=True)
    (home / "keys" / "dev-signing-key.pub.pem").write_bytes(public_pem)  # the key the devices trust
    env = {
        **os.environ,
        **stack_environment,
        "FLEETML_HOME": str(home),
        "FLEETML_EXECUTOR": "multiprocess",
        "FLEETML_SPARK_DRIVER_HOST": "127.0.0.1",
        "FLEETML_SIGNING_KEY": private_key_to_pem(signing_key).decode(),
        "FLEETML_SIGNING_PUBLIC_KEY": public_pem.decode(),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    bucket = stack_environment["FLEETML_LAKE_URI"].removeprefix("s3://").split("/", 1)[0]

    for command in ci_commands():
        completed = run(command, env)
    assert completed.stdout.startswith("OK harsh_event 1.1.0")  # the device-side check of the fetched bundle
    ci_seconds = time.perf_counter() - started

    # Every store is on S3, and nothing was written under the local home but the keys and the fetched bundle.
    lake = s3_keys(f"{bucket}/lake")
    assert f"{bucket}/lake/harsh_event/window_features/2026-11-01.parquet" in lake
    assert any(key.startswith(f"{bucket}/landing/telemetry/date=2026-11-04/") for key in s3_keys(f"{bucket}/landing"))
    assert f"{bucket}/refs/harsh_event/rollout_plan.json" in s3_keys(f"{bucket}/refs")
    assert any(key.endswith("/version.json") for key in s3_keys(f"{bucket}/registry/harsh_event"))
    assert any(key.endswith(".bundle.tar") for key in s3_keys(f"{bucket}/artifacts"))
    assert sorted(path.name for path in home.iterdir()) == ["ci", "keys"]

    # The instance is PostgreSQL, and it holds the lifecycle's materializations.
    instance = dg.DagsterInstance.from_config(stack_environment["DAGSTER_HOME"])
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        candidate = instance.get_latest_materialization_event(dg.AssetKey(["harsh_event", "candidate_model"]))
        assert candidate is not None
        # The sweep ran on the Ray cluster reached by address, not on a local Ray.
        assert candidate.asset_materialization.metadata["ray_cluster"].value == "ExistingRayCluster"

        # Spark: the feature engine on the standalone cluster rewrites a day identical to the pandas engine's.
        pandas_features = s3_read(f"{bucket}/lake/harsh_event/window_features/2026-11-02.parquet")
        spark_config = {"ops": {"harsh_event__window_features": {"config": {"engine": "spark"}}}}
        run(
            "dagster asset materialize -m pipelines.definitions --select harsh_event/window_features "
            f"--partition 2026-11-02 --config-json '{json.dumps(spark_config)}'",
            env,
        )
        spark_features = s3_read(f"{bucket}/lake/harsh_event/window_features/2026-11-02.parquet")
        assert spark_features.num_rows == pandas_features.num_rows > 0
        assert spark_features.column("event_id").equals(pandas_features.column("event_id"))
        for name in FEATURE_NAMES:
            left, right = pandas_features.column(name).to_numpy(), spark_features.column(name).to_numpy()
            assert abs(left - right).max() <= 1e-6, name

        # Devices run the bundle and upload feedback to S3; the sensor turns it into runs, exactly once.
        bundle = home / "ci" / "edge_bundle.tar"
        deploy = f"python -m fleet_sim deploy --bundle {bundle} --days 1 --devices 30 --seed 3 --start 2026-11-05"
        run(deploy, env)
        uploads = [key for key in s3_keys(f"{bucket}/landing/edge_feedback") if key.endswith(".parquet")]
        assert uploads and all("/edge_feedback/date=" in key for key in uploads)
        drained = run("python -m pipelines.sensor_cli drain edge_feedback_sensor", env)
        assert f"{len(uploads)} runs (0 failed)" in drained.stdout
        assert "0 runs (0 failed)" in run("python -m pipelines.sensor_cli drain edge_feedback_sensor", env).stdout

        drift = instance.get_latest_materialization_event(dg.AssetKey(["harsh_event", "drift_report"]))
        assert drift is not None and drift.asset_materialization.metadata["drift_judged"].value  # >= 300 windows
        report_uri = drift.asset_materialization.metadata["report"].value
        assert report_uri.startswith(f"s3://{bucket}/artifacts/")
    finally:
        instance.dispose()
    with capsys.disabled():  # the wall time belongs in `make test`'s output
        print(f"\nproduction path: CI commands {ci_seconds:.0f} s, whole test {time.perf_counter() - started:.0f} s")


def s3_read(key: str):
    from resources.filesystems import read_parquet

    return read_parquet(f"s3://{key}")
