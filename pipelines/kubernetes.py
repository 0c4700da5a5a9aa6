"""What the production Kubernetes pods are: the one image, its Python, the namespace and the secrets
they read (what each step asks for in CPU and memory is the assets' own: `assets/step_resources.py`).

The Helm values, the KubeRay and Spark configs and the deploy tests read the same constants, so an
image tag or a secret name is changed in one place and cannot drift between them.
"""

from assets.step_resources import SIGNING_SECRET  # noqa: F401 - the deploy files' one list of secrets

FLEETML_IMAGE_REPOSITORY = "ghcr.io/fleetml/fleetml"
# The project version from pyproject.toml (a deploy test keeps them equal): one release, one tag.
FLEETML_IMAGE_TAG = "0.1.0"
FLEETML_IMAGE = f"{FLEETML_IMAGE_REPOSITORY}:{FLEETML_IMAGE_TAG}"
# deploy/docker/Dockerfile installs the project into this virtualenv; Spark and Ray workers run it.
IMAGE_PYTHON = "/opt/venv/bin/python"

# Namespace of the Helm release: run and step jobs, RayJobs and Spark executors all live there.
K8S_NAMESPACE = "fleetml"

# Secrets created by the operator before the chart is installed (README.md, "Deploying"), never by us.
S3_SECRET = "fleetml-s3"
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
SIGNING_SECRET_KEYS = ("FLEETML_SIGNING_KEY", "FLEETML_SIGNING_PUBLIC_KEY")
POSTGRES_SECRET = "fleetml-postgresql"
