"""deploy/helm/values.yaml: valid for the official Dagster chart, wired to this code location and
image, and free of secret values.

Helm validates values.schema.json against the chart's defaults coalesced with the values file, so
the tests do the same (`helm_merge`); the schema's Kubernetes $refs resolve offline (conftest).
"""

import copy
import importlib.metadata
import re
from collections.abc import Iterator
from typing import Any

import pytest
from deploy_files import helm_merge

from assets.step_resources import K8S_CONFIG_TAG, K8S_LIGHT_STEP
from pipelines.kubernetes import (
    FLEETML_IMAGE_REPOSITORY,
    FLEETML_IMAGE_TAG,
    POSTGRES_SECRET,
    S3_SECRET,
)
from pipelines.preflight import STORE_VARIABLES

# Names under which a literal would be a credential.
CREDENTIAL_NAME = re.compile(
    r"password|secret|token|credential|private|(api|access|signing)_?key", re.IGNORECASE
)
# Values that look like credentials whatever their key: AWS key ids, PEM blocks, URLs with a password.
CREDENTIAL_VALUE = re.compile(r"AKIA[0-9A-Z]{16}|-----BEGIN|://[^/\s:@]+:[^/\s@]+@")
# Keys whose value names a Secret (or a key inside one) rather than holding one.
SECRET_REFERENCE_KEYS = {"postgresqlSecretName", "postgresqlSecretUsernameKey", "postgresqlSecretPasswordKey"}


def schema_errors(validator, values: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(values)]


def literal_credentials(node: Any, path: str = "") -> Iterator[str]:
    """Paths of values that carry a credential inline instead of referencing a Secret.

    A credential may appear only as a reference: `envSecrets`/`secretRef` names, `secretKeyRef`,
    or the chart's Postgres secret name. An `env` entry with a credential-like name must take its
    value from a Secret, and any non-empty string under a credential-like key is a leak.
    """
    if isinstance(node, dict):
        name = str(node.get("name", ""))
        if "value" in node and CREDENTIAL_NAME.search(name) and node["value"] not in ("", None):
            yield f"{path}/{name}"
        for key, value in node.items():
            child = f"{path}/{key}"
            if key in SECRET_REFERENCE_KEYS or key in ("envSecrets", "secretKeyRef", "secretRef"):
                continue
            if isinstance(value, str) and value and CREDENTIAL_NAME.search(str(key)):
                yield child
            yield from literal_credentials(value, child)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from literal_credentials(item, f"{path}[{index}]")
    elif isinstance(node, str) and CREDENTIAL_VALUE.search(node):
        yield path


@pytest.fixture(scope="module")
def merged(chart_defaults, helm_values) -> dict[str, Any]:
    return helm_merge(chart_defaults, helm_values)


@pytest.fixture(scope="module")
def code_location(helm_values) -> dict[str, Any]:
    (deployment,) = helm_values["dagster-user-deployments"]["deployments"]
    return deployment


@pytest.fixture(scope="module")
def run_launcher(helm_values) -> dict[str, Any]:
    return helm_values["runLauncher"]["config"]["k8sRunLauncher"]


def test_the_chart_defaults_themselves_validate(helm_validator, chart_defaults):
    """The schema and the offline $ref shim work on the chart's own known-good values."""
    assert schema_errors(helm_validator, chart_defaults) == []


def test_values_merged_over_the_chart_defaults_validate(helm_validator, merged):
    assert schema_errors(helm_validator, merged) == []


def test_an_unknown_key_under_the_webserver_is_rejected(helm_validator, merged):
    broken = copy.deepcopy(merged)
    broken["dagsterWebserver"]["replicaCountt"] = 2
    assert any("replicaCountt" in error for error in schema_errors(helm_validator, broken))


def test_a_wrong_type_in_a_kubernetes_referenced_field_is_rejected(helm_validator, merged):
    """`resources` is a $ref into the Kubernetes definitions: a list there must fail, which proves
    the remote refs resolve rather than being skipped."""
    broken = copy.deepcopy(merged)
    broken["dagster-user-deployments"]["deployments"][0]["resources"]["limits"] = ["1", "2Gi"]
    broken["dagsterDaemon"]["envSecrets"] = [{"name": 7}]
    errors = schema_errors(helm_validator, broken)
    assert any(e.startswith("dagster-user-deployments/deployments/0/resources/limits") for e in errors), (
        errors
    )
    assert any(e.startswith("dagsterDaemon/envSecrets/0/name") for e in errors), errors


def test_no_secret_value_is_written_in_the_values(helm_values):
    assert list(literal_credentials(helm_values)) == []


@pytest.mark.parametrize(
    "leak",
    [
        {"name": "AWS_SECRET_ACCESS_KEY", "value": "wJalrXUtnFEMI"},
        {"name": "FLEETML_SIGNING_KEY", "value": "-----BEGIN PRIVATE KEY-----"},
        {"name": "FLEETML_LAKE_URI", "value": "s3://user:hunter2@lake/"},
    ],
)
def test_the_secret_scan_catches_a_literal_credential(helm_values, leak):
    leaking = copy.deepcopy(helm_values)
    leaking["dagster-user-deployments"]["deployments"][0]["env"].append(leak)
    assert list(literal_credentials(leaking)) != []


def test_the_postgres_password_comes_only_from_an_existing_secret(helm_values, merged):
    assert helm_values["generatePostgresqlPasswordSecret"] is False
    assert helm_values["global"]["postgresqlSecretName"] == POSTGRES_SECRET
    assert helm_values["postgresql"]["enabled"] is False
    assert helm_values["postgresql"]["postgresqlPassword"] == ""
    assert merged["postgresql"]["postgresqlHost"] and merged["postgresql"]["postgresqlDatabase"]


def test_code_location_serves_pipelines_definitions_from_the_image(code_location, pyproject):
    args = code_location["dagsterApiGrpcArgs"]
    assert args[args.index("-m") + 1] == pyproject["tool"]["dg"]["project"]["code_location_target_module"]
    assert code_location["name"] == pyproject["tool"]["dg"]["project"]["code_location_name"]
    assert code_location["image"]["repository"] == FLEETML_IMAGE_REPOSITORY
    assert str(code_location["image"]["tag"]) == FLEETML_IMAGE_TAG


def test_the_image_tag_is_the_project_version(pyproject):
    assert FLEETML_IMAGE_TAG == pyproject["project"]["version"]


def test_webserver_and_daemon_run_the_code_locations_dagster_version(helm_values):
    dagster_version = importlib.metadata.version("dagster")
    assert helm_values["dagsterWebserver"]["image"]["tag"] == dagster_version
    assert helm_values["dagsterDaemon"]["image"]["tag"] == dagster_version


def test_production_environment_is_plain_env_and_credentials_come_from_secrets(code_location, run_launcher):
    env = {item["name"]: item["value"] for item in code_location["env"]}
    assert env["FLEETML_ENV"] == "prod"
    for name in STORE_VARIABLES:
        assert env[name].startswith("s3://"), name
    assert re.match(r"^(spark|k8s)://", env["FLEETML_SPARK_MASTER"])
    assert "FLEETML_RAY_ADDRESS" not in env, "production Ray is a KubeRay cluster per step, not an address"
    expected = [{"name": S3_SECRET}]  # the signing secret reaches the signing step alone
    assert code_location["envSecrets"] == expected
    assert run_launcher["envSecrets"] == expected


def test_run_launcher_pull_policy_matches_the_code_location(code_location, run_launcher):
    assert run_launcher["imagePullPolicy"] == code_location["image"]["pullPolicy"]


def test_untagged_steps_get_the_light_step_resources(run_launcher):
    assert run_launcher["resources"] == K8S_LIGHT_STEP[K8S_CONFIG_TAG]["container_config"]["resources"]


def test_compute_logs_go_to_s3_and_its_readers_get_the_s3_secret(helm_values):
    manager = helm_values["computeLogManager"]
    assert manager["type"] == "S3ComputeLogManager"
    assert manager["config"]["s3ComputeLogManager"]["bucket"]
    assert manager["config"]["s3ComputeLogManager"]["prefix"]
    for component in ("dagsterWebserver", "dagsterDaemon"):
        assert {"name": S3_SECRET} in helm_values[component]["envSecrets"], component


def test_daemon_queues_runs_and_monitors_them(helm_values):
    daemon = helm_values["dagsterDaemon"]
    assert daemon["runCoordinator"]["enabled"] is True
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert daemon["runCoordinator"]["config"]["queuedRunCoordinator"]["maxConcurrentRuns"] > 0
    assert daemon["runMonitoring"]["enabled"] is True


def test_pods_run_as_the_images_non_root_user(code_location, run_launcher):
    assert code_location["podSecurityContext"]["runAsNonRoot"] is True
    assert code_location["podSecurityContext"]["runAsUser"] == 10001
    assert run_launcher["securityContext"]["runAsUser"] == 10001
