"""The production Ray resource renders a RayJob that KubeRay's CRD accepts, on the fleetml image, with
the installed Ray version, sized pods and S3 credentials by reference.

The manifest is built by dagster-ray's own `RayJobConfig.to_k8s`, the call `KubeRayInteractiveJob.create`
submits, minus the run's labels. CRD schemas do not forbid unknown keys (Kubernetes prunes them), so
the pod templates are also validated strictly as core `PodTemplate`s, and key fields are asserted.
`deploy/kuberay/rayjob.yaml` is that rendering, kept equal by a test (`UPDATE_SNAPSHOT=1` rewrites it).
"""

import copy
import importlib.metadata
import os
import re
import subprocess
import sys
from typing import Any

import dagster as dg
import jsonschema
import kubernetes_validate
import pytest
import yaml
from deploy_files import REPO, SCHEMAS

from pipelines.kubernetes import FLEETML_IMAGE, K8S_NAMESPACE, S3_SECRET
from pipelines.production_ray import kuberay_resource

EXAMPLE = REPO / "deploy" / "kuberay" / "rayjob.yaml"
RBAC = REPO / "deploy" / "kuberay" / "rbac.yaml"
CREDENTIAL_ENV = re.compile(r"SECRET|PASSWORD|TOKEN|(ACCESS|SIGNING)_KEY")
EXAMPLE_NAME = "dg-prod-example-sweep"  # dagster-ray names each RayJob after its run and step
HEADER = (
    "# The RayJob that pipelines/production_ray.py's kuberay_resource() submits for a sweep step (the\n"
    "# name and run labels differ per step). Generated, do not edit: UPDATE_SNAPSHOT=1 pytest tests/deploy\n"
)


def render_rayjob(resource: Any) -> dict[str, Any]:
    """The manifest `KubeRayInteractiveJob.create` sends, without the run-specific labels."""
    manifest = resource.ray_job.to_k8s(
        dg.build_init_resource_context(), image=resource.image, env_vars=resource.get_env_vars_to_inject()
    )
    manifest["metadata"] = {"name": EXAMPLE_NAME, "namespace": resource.namespace, **manifest["metadata"]}
    return manifest


def crd_errors(validator: jsonschema.Draft7Validator, manifest: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]


def pod_templates(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    cluster = manifest["spec"]["rayClusterSpec"]
    groups = {"head": cluster["headGroupSpec"]} | {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    return {name: group["template"] for name, group in groups.items()}


def as_pod_template(template: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "ray-pod"}, "template": template}


@pytest.fixture(scope="module")
def rayjob_validator() -> jsonschema.Draft7Validator:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load((SCHEMAS / "kuberay" / "ray.io_rayjobs.yaml").read_text(), Loader=loader)
    (v1,) = [version for version in crd["spec"]["versions"] if version["name"] == "v1"]
    return jsonschema.Draft7Validator(v1["schema"]["openAPIV3Schema"])


@pytest.fixture(scope="module")
def resource():
    return kuberay_resource()


@pytest.fixture
def manifest(resource) -> dict[str, Any]:
    return render_rayjob(resource)


def test_the_production_resource_is_dagster_rays_interactive_rayjob(resource):
    from dagster_ray.kuberay import KubeRayInteractiveJob

    assert isinstance(resource, KubeRayInteractiveJob)
    assert resource.namespace == K8S_NAMESPACE
    assert resource.ray_job.spec.submission_mode == "InteractiveMode"


def test_the_rayjob_validates_against_the_kuberay_crd(rayjob_validator, manifest):
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayJob"
    assert crd_errors(rayjob_validator, manifest) == []


def test_the_crd_validation_bites_on_wrong_types(rayjob_validator, manifest):
    broken = copy.deepcopy(manifest)
    broken["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] = "two"
    broken["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"] = {"name": "head"}
    errors = crd_errors(rayjob_validator, broken)
    assert any("workerGroupSpecs/0/replicas" in e for e in errors), errors
    assert any("headGroupSpec/template/spec/containers" in e for e in errors), errors


def test_ray_pods_are_valid_pod_templates_under_strict_schemas(manifest, k8s_version):
    templates = pod_templates(manifest)
    assert set(templates) == {"head", "sweep"}
    for template in templates.values():
        kubernetes_validate.validate(as_pod_template(template), k8s_version, strict=True)


def test_strict_pod_validation_catches_a_misspelled_key_the_crd_lets_through(
    rayjob_validator, manifest, k8s_version
):
    broken = copy.deepcopy(manifest)
    head = broken["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]
    head["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert crd_errors(rayjob_validator, broken) == []
    with pytest.raises(kubernetes_validate.ValidationError, match="imagePullPolicyy"):
        kubernetes_validate.validate(as_pod_template(head), k8s_version, strict=True)


def test_head_and_workers_run_the_fleetml_image_with_the_installed_ray(manifest):
    cluster = manifest["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"] == importlib.metadata.version("ray")
    templates = pod_templates(manifest)
    assert set(templates) == {"head", "sweep"}
    for name, template in templates.items():
        (container,) = template["spec"]["containers"]
        assert container["image"] == FLEETML_IMAGE, name
        resources = container["resources"]
        for kind in ("requests", "limits"):
            assert resources[kind]["cpu"] and resources[kind]["memory"], (name, kind)
        assert container["envFrom"] == [{"secretRef": {"name": S3_SECRET}}], name
        assert not [
            env for env in container.get("env", []) if "value" in env and CREDENTIAL_ENV.search(env["name"])
        ]


def test_the_head_schedules_no_tasks_and_workers_are_fixed(manifest):
    cluster = manifest["spec"]["rayClusterSpec"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    (workers,) = cluster["workerGroupSpecs"]
    assert workers["minReplicas"] == workers["replicas"] == workers["maxReplicas"] >= 1


def test_kuberay_cleans_up_after_the_step(manifest):
    spec = manifest["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert 0 < spec["activeDeadlineSeconds"] <= 24 * 3600


def test_the_committed_example_is_the_rendered_rayjob(manifest):
    if os.environ.get("UPDATE_SNAPSHOT"):
        EXAMPLE.write_text(HEADER + yaml.safe_dump(manifest, sort_keys=False))
    assert yaml.safe_load(EXAMPLE.read_text()) == manifest


def test_the_rbac_validates_and_binds_the_charts_service_account(helm_values, k8s_version):
    documents = list(yaml.safe_load_all(RBAC.read_text()))
    for document in documents:
        kubernetes_validate.validate(document, k8s_version, strict=True)
    role = next(d for d in documents if d["kind"] == "Role")
    binding = next(d for d in documents if d["kind"] == "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": helm_values["serviceAccount"]["name"], "namespace": K8S_NAMESPACE}
    ]
    rayjobs = next(rule for rule in role["rules"] if "rayjobs" in rule["resources"])
    assert {"create", "get", "patch", "delete"} <= set(rayjobs["verbs"])


def test_importing_the_module_does_not_import_dagster_ray():
    """The code location loads `pipelines.production_ray`; dagster-ray must wait for a Ray step."""
    probe = "import sys, pipelines.production_ray; print('dagster_ray' in sys.modules, 'ray' in sys.modules)"
    completed = subprocess.run(
        [sys.executable, "-c", probe], check=False, capture_output=True, text=True, cwd=REPO
    )
    assert completed.stdout.split() == ["False", "False"], completed.stderr
