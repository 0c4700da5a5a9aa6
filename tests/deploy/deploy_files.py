"""The repository's deployment files and the reference schemas beside the repository (copied from
upstream into ../shared/schemas, see its README), for the deploy tests and their fixtures."""

import copy
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO.parent / "shared" / "schemas"
# The one remote prefix of the chart schema's $refs (schemas/README.md).
K8S_DEFINITIONS_URL = "https://kubernetesjsonschema.dev/v1.18.0/_definitions.json"


def helm_merge(defaults: Any, overrides: Any) -> Any:
    """Helm's coalescing of a values file over the chart's values: maps merge key by key, anything
    else (lists, scalars) replaces, and a null override removes the default."""
    if not isinstance(defaults, dict) or not isinstance(overrides, dict):
        return copy.deepcopy(overrides)
    merged = copy.deepcopy(defaults)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = helm_merge(merged.get(key), value)
    return merged
