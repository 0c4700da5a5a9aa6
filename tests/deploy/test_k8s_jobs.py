"""The Kubernetes Jobs that `k8s_job_executor` launches for fleetml's steps, rendered without a cluster
and validated against the Kubernetes schemas in strict mode (unknown keys rejected).

Each Job is built the way `dagster_k8s.executor.K8sStepHandler.launch_step` builds it: the run
launcher's container context (what deploy/helm/values.yaml configures; the chart's
`_run-launcher.tpl` maps those values one to one), merged with the code location's config
(`includeConfigInLaunchedRuns`), merged with the step's `dagster-k8s/config` op tag, then
`construct_dagster_k8s_job`. The step tags come from the loaded code location, by asset key.
"""

import json
import os
import re
import subprocess
import sys
from typing import Any

import dagster as dg
import kubernetes
import kubernetes_validate
import pytest
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import (
    DagsterK8sJobConfig,
    UserDefinedDagsterK8sConfig,
    construct_dagster_k8s_job,
    get_k8s_job_name,
    get_user_defined_k8s_config,
)
from deploy_files import REPO

from assets.step_resources import (
    K8S_BATCH_STEP,
    K8S_CONFIG_TAG,
    K8S_LIGHT_STEP,
    K8S_SPARK_STEP,
    K8S_TRAINING_STEP,
)
from pipelines.kubernetes import (
    FLEETML_IMAGE,
    K8S_NAMESPACE,
    POSTGRES_SECRET,
    S3_SECRET,
    SIGNING_SECRET,
)
from pipelines.preflight import STORE_VARIABLES

RUN_ID = "0f6c4a9e-2b71-4d2e-9a53-5d8f0c1e7b42"
# The heavy steps and the sizing they must carry; the asset graph supplies the tags.
HEAVY_STEPS = {
    ("harsh_event", "candidate_model"): K8S_TRAINING_STEP,
    ("harsh_event", "window_features"): K8S_SPARK_STEP,
    ("harsh_event", "training_dataset"): K8S_BATCH_STEP,
    ("harsh_event", "drift_report"): K8S_BATCH_STEP,
}
LIGHT_STEP = ("harsh_event", "model_evaluation")
CREDENTIAL_ENV = re.compile(r"SECRET|PASSWORD|TOKEN|(ACCESS|SIGNING)_KEY")


def resources_of(tags: dict[str, Any]) -> dict[str, Any]:
    return tags[K8S_CONFIG_TAG]["container_config"]["resources"]


def launcher_context(helm_values: dict[str, Any]) -> K8sContainerContext:
    """What `K8sContainerContext.create_for_run` takes from the chart's K8sRunLauncher."""
    launcher = helm_values["runLauncher"]["config"]["k8sRunLauncher"]
    return K8sContainerContext(
        image_pull_policy=launcher["imagePullPolicy"],
        service_account_name=helm_values["serviceAccount"]["name"],
        env_secrets=[secret["name"] for secret in launcher["envSecrets"]],
        namespace=K8S_NAMESPACE,
        resources=launcher["resources"],
        security_context=launcher["securityContext"],
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
            {"job_spec_config": launcher["runK8sConfig"]["jobSpecConfig"]}
        ),
    )


def code_location_context(helm_values: dict[str, Any]) -> K8sContainerContext:
    """The code location's env and Secrets, which `includeConfigInLaunchedRuns` passes to runs."""
    (deployment,) = helm_values["dagster-user-deployments"]["deployments"]
    return K8sContainerContext(
        env=deployment["env"], env_secrets=[secret["name"] for secret in deployment["envSecrets"]]
    )


def render_step_job(
    step_key: str, step_tags: dict[str, str], helm_values: dict[str, Any], merged_global
) -> dict:
    """The Job manifest `K8sStepHandler.launch_step` would create for this step, as the API sees it."""
    container_context = (
        launcher_context(helm_values)
        .merge(code_location_context(helm_values))
        .merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(step_tags)))
    )
    job_config = DagsterK8sJobConfig(
        job_image=FLEETML_IMAGE,
        dagster_home=merged_global["dagsterHome"],
        instance_config_map="dagster-instance",  # "<release fullname>-instance" for release "dagster"
        postgres_password_secret=merged_global["postgresqlSecretName"],
    )
    job_name = f"dagster-step-{get_k8s_job_name(RUN_ID, step_key)}"
    job = construct_dagster_k8s_job(
        job_config=job_config,
        args=["dagster", "api", "execute_step"],
        job_name=job_name,
        pod_name=job_name,
        component="step_worker",
        user_defined_k8s_config=container_context.run_k8s_config,
        labels={"dagster/op": step_key, "dagster/run-id": RUN_ID, "dagster/code-location": "fleetml"},
        env_vars=[{"name": "DAGSTER_RUN_STEP_KEY", "value": step_key}],
    )
    return kubernetes.client.ApiClient().sanitize_for_serialization(job)


def step_tags_of(definitions: dg.Definitions, key: tuple[str, ...]) -> dict[str, str]:
    return dict(definitions.resolve_assets_def(dg.AssetKey(list(key))).op.tags)


@pytest.fixture(scope="module")
def merged_global(chart_defaults, helm_values) -> dict[str, Any]:
    return {**chart_defaults["global"], **helm_values["global"]}


@pytest.fixture(params=list(HEAVY_STEPS), ids=lambda key: "/".join(key))
def heavy_step(request, definitions, helm_values, merged_global):
    key = request.param
    tags = step_tags_of(definitions, key)
    step_key = dg.AssetKey(list(key)).to_python_identifier()
    return key, render_step_job(step_key, tags, helm_values, merged_global)


def container_of(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


def test_heavy_assets_carry_their_step_tags(definitions):
    for key, expected in HEAVY_STEPS.items():
        tags = step_tags_of(definitions, key)
        assert json.loads(tags[K8S_CONFIG_TAG]) == expected[K8S_CONFIG_TAG], key


def test_rendered_step_job_is_a_valid_kubernetes_job_in_strict_mode(heavy_step, k8s_version):
    _, job = heavy_step
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    kubernetes_validate.validate(job, k8s_version, strict=True)


def test_the_step_pod_gets_the_resources_of_its_tag(heavy_step):
    key, job = heavy_step
    assert container_of(job)["resources"] == resources_of(HEAVY_STEPS[key])


def test_the_step_pod_runs_the_image_as_non_root_with_credentials_by_reference(heavy_step, helm_values):
    _, job = heavy_step
    container = container_of(job)
    pod = job["spec"]["template"]["spec"]
    assert container["image"] == FLEETML_IMAGE
    assert container["securityContext"]["runAsUser"] == 10001
    assert pod["serviceAccountName"] == helm_values["serviceAccount"]["name"]
    assert {"secretRef": {"name": S3_SECRET}} in container["envFrom"]
    assert {"secretRef": {"name": SIGNING_SECRET}} not in container["envFrom"]  # only the signing step
    env = {item["name"]: item for item in container["env"]}
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == POSTGRES_SECRET
    assert env["FLEETML_ENV"]["value"] == "prod"
    assert [name for name, item in env.items() if CREDENTIAL_ENV.search(name) and "value" in item] == []
    assert job["spec"]["ttlSecondsAfterFinished"] == 86400


def test_an_untagged_step_gets_the_run_launchers_light_resources(
    definitions, helm_values, merged_global, k8s_version
):
    tags = step_tags_of(definitions, LIGHT_STEP)
    assert K8S_CONFIG_TAG not in tags
    job = render_step_job("harsh_event__model_evaluation", tags, helm_values, merged_global)
    kubernetes_validate.validate(job, k8s_version, strict=True)
    assert container_of(job)["resources"] == resources_of(K8S_LIGHT_STEP)


def test_a_misspelled_key_in_a_step_tag_is_refused_by_dagster_k8s(helm_values, merged_global):
    tags = {K8S_CONFIG_TAG: json.dumps({"container_config": {"resource": {"limits": {"cpu": "1"}}}})}
    with pytest.raises(Exception, match="Unexpected keys in model class V1Container"):
        render_step_job("harsh_event__candidate_model", tags, helm_values, merged_global)


def test_strict_validation_bites_on_a_wrong_type_dagster_k8s_lets_through(
    helm_values, merged_global, k8s_version
):
    """dagster-k8s checks key names and coerces primitives, but passes int-or-string fields through;
    the schema catches what would otherwise fail only when the API server receives the Job."""
    probe = {"http_get": {"path": "/healthz", "port": ["8265"]}}
    tags = {K8S_CONFIG_TAG: json.dumps({"container_config": {"readiness_probe": probe}})}
    job = render_step_job("harsh_event__candidate_model", tags, helm_values, merged_global)
    with pytest.raises(kubernetes_validate.ValidationError, match="8265"):
        kubernetes_validate.validate(job, k8s_version, strict=True)


PROD_PROBE = """
import json
import dagster as dg
from dagster_k8s import k8s_job_executor
from pipelines.definitions import defs
from pipelines.environment import executor_for
from assets.step_resources import K8S_CONFIG_TAG

result = {
    "executor_is_k8s": executor_for("prod") is k8s_job_executor,
    "ray_resource": type(defs.resources["ray_cluster"]).__name__,
    "jobs": {},
}
for job in defs.resolve_all_job_defs():
    if job.name.startswith("__"):
        continue
    per_step = {
        node.name: json.loads(node.definition.tags[K8S_CONFIG_TAG])
        for node in job.graph.node_dict.values()
        if K8S_CONFIG_TAG in node.definition.tags
    }
    valid = dg.validate_run_config(job, {"execution": {"config": {"max_concurrent": 4, "per_step_k8s_config": per_step}}})
    try:
        dg.validate_run_config(job, {"execution": {"config": {"per_step_k8s_config": {"x": {"container_confg": {}}}}}})
        refused = False
    except dg.DagsterInvalidConfigError:
        refused = True
    result["jobs"][job.name] = {
        "executor": job.executor_def is k8s_job_executor,
        "steps": sorted(valid["execution"]["k8s"]["per_step_k8s_config"]),
        "typo_refused": refused,
    }
print(json.dumps(result))
"""


def test_k8s_job_executor_config_validates_for_the_production_code_location():
    """Under FLEETML_ENV=prod every job runs on `k8s_job_executor` and Ray is the KubeRay resource,
    and the executor's own config schema accepts the step tags as `per_step_k8s_config` (and
    refuses a misspelled field)."""
    # dg.EnvVar must resolve for run config to validate; these placeholders are never read, and the
    # preflight (which would reach the stores) is skipped: nothing here is meant to be reached.
    inherited = {k: v for k, v in os.environ.items() if k not in ("FLEETML_RAY_ADDRESS", "FLEETML_EXECUTOR")}
    env = {
        **inherited,
        "FLEETML_ENV": "prod",
        "FLEETML_PREFLIGHT": "skip",
        **{name: "s3://placeholder/" + name.lower() for name in STORE_VARIABLES},
        "FLEETML_SIGNING_KEY": "placeholder",
        "FLEETML_SIGNING_PUBLIC_KEY": "placeholder",
    }
    completed = subprocess.run(
        [sys.executable, "-c", PROD_PROBE], check=False, capture_output=True, text=True, cwd=REPO, env=env
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["executor_is_k8s"] is True
    assert result["ray_resource"] == "KubeRayInteractiveJob"
    assert result["jobs"] and all(job["executor"] and job["typo_refused"] for job in result["jobs"].values())
    assert result["jobs"]["harsh_event_training_job"]["steps"] == [
        "harsh_event__candidate_model",
        "harsh_event__edge_bundle",
        "harsh_event__training_dataset",
    ]
    assert result["jobs"]["telemetry_job"]["steps"] == ["harsh_event__window_features"]
    assert result["jobs"]["edge_feedback_job"]["steps"] == ["harsh_event__drift_report"]


def test_only_the_bundle_step_pod_holds_the_signing_secret(definitions, helm_values, merged_global, k8s_version):
    key = ("harsh_event", "edge_bundle")
    job = render_step_job(dg.AssetKey(list(key)).to_python_identifier(), step_tags_of(definitions, key), helm_values, merged_global)
    kubernetes_validate.validate(job, k8s_version, strict=True)
    assert {"secretRef": {"name": SIGNING_SECRET}} in container_of(job)["envFrom"]
    assert {"secretRef": {"name": S3_SECRET}} in container_of(job)["envFrom"]

