"""Shared fixtures of the deploy tests: the repository's deployment files and the reference schemas
(copied from upstream into ../shared/schemas, see its README) that validate them with no cluster."""

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_files import K8S_DEFINITIONS_URL, REPO, SCHEMAS


@pytest.fixture(scope="session")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.fixture(scope="session")
def helm_values() -> dict[str, Any]:
    return yaml.safe_load((REPO / "deploy" / "helm" / "values.yaml").read_text())


@pytest.fixture(scope="session")
def chart_defaults() -> dict[str, Any]:
    return yaml.safe_load((SCHEMAS / "dagster-helm" / "values.yaml").read_text())


@pytest.fixture(scope="session")
def helm_validator():
    """A Draft-7 validator of the chart's values.schema.json whose Kubernetes $refs resolve to the
    newest definitions bundled with kubernetes-validate (2020-12 `$defs`, exposed as `definitions`)."""
    import jsonschema
    import kubernetes_validate
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    schema = json.loads((SCHEMAS / "dagster-helm" / "values.schema.json").read_text())
    bundle_dir = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    bundle_path = bundle_dir / f"v{kubernetes_validate.utils.latest_version()}-local" / "_definitions.json"
    bundle = json.loads(bundle_path.read_text())
    shim = {key: value for key, value in bundle.items() if key != "$id"}
    shim["definitions"] = bundle["$defs"]
    registry = Registry().with_resource(
        K8S_DEFINITIONS_URL, Resource.from_contents(shim, default_specification=DRAFT7)
    )
    return jsonschema.Draft7Validator(schema, registry=registry)


@pytest.fixture(scope="session")
def k8s_version() -> str:
    """The newest Kubernetes version whose schemas kubernetes-validate bundles."""
    import kubernetes_validate

    return kubernetes_validate.utils.latest_version()


@pytest.fixture(scope="session")
def definitions():
    """The code location as this process loads it (FLEETML_ENV unset: local); op tags do not
    depend on the environment."""
    from pipelines.definitions import defs

    return defs
