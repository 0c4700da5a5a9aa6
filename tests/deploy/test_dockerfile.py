"""deploy/docker/Dockerfile: lint-clean, non-root, no baked-in secrets, and the same Python minor and
Ray version as the environment the tests (and the Ray client) run in.

No Docker engine here: the image is checked statically; `docker build` is a release step.
"""

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_files import REPO

from pipelines.kubernetes import FLEETML_IMAGE, IMAGE_PYTHON

DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def hadolint_findings(path: Path) -> list[str]:
    completed = subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "info", str(path)],
        check=False,
        capture_output=True,
        text=True,
    )
    return [line for line in completed.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


def test_hadolint_finds_nothing_at_the_info_threshold():
    assert hadolint_findings(DOCKERFILE) == []


def test_hadolint_bites_on_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install -y curl\nRUN pip install ray\n")
    codes = " ".join(hadolint_findings(bad))
    assert "DL3007" in codes and "DL3013" in codes


def test_every_ignored_rule_is_explained_by_a_comment():
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            rules = line.split("=", 1)[1].split(",")
            explanation = " ".join(lines[max(0, number - 6) : number])
            for rule in rules:
                assert rule.strip() in explanation, f"line {number + 1}: say why {rule} is ignored"


def test_the_image_runs_as_a_fixed_non_root_user(dockerfile):
    keywords = [keyword for keyword, _ in dockerfile]
    last_run = max(i for i, keyword in enumerate(keywords) if keyword == "RUN")
    users = [(i, rest) for i, (keyword, rest) in enumerate(dockerfile) if keyword == "USER"]
    assert users, "no USER instruction"
    index, user = users[-1]
    assert index > last_run, "a RUN after the last USER runs as root"
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user} is not a fixed non-zero UID"


def test_no_env_or_arg_carries_a_secret(dockerfile):
    secret_like = re.compile(r"SECRET|PASSWORD|KEY|TOKEN", re.IGNORECASE)
    for keyword, rest in dockerfile:
        if keyword in ("ENV", "ARG"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", rest) or [rest.split()[0]]
            assert not [name for name in names if secret_like.search(name)], f"{keyword} {rest}"


def test_python_minor_matches_the_interpreter(dockerfile):
    (base,) = [rest for keyword, rest in dockerfile if keyword == "FROM"]
    match = re.match(r"python:(\d+)\.(\d+)", base)
    assert match, base
    assert (int(match[1]), int(match[2])) == sys.version_info[:2]


def test_ray_in_the_image_is_the_installed_ray(pyproject):
    """The image installs Ray from pyproject's pin; the Ray client here must be that version."""
    (pin,) = [dep for dep in pyproject["project"]["dependencies"] if re.match(r"ray(\[|=)", dep)]
    assert pin.split("==")[1] == importlib.metadata.version("ray")


def test_the_image_installs_the_project_into_its_venv(dockerfile):
    runs = " ".join(rest for keyword, rest in dockerfile if keyword == "RUN")
    assert "pip install ." in runs
    assert f"python -m venv {Path(IMAGE_PYTHON).parents[1]}" in runs
    envs = " ".join(rest for keyword, rest in dockerfile if keyword == "ENV")
    assert "PYTHONUNBUFFERED=1" in envs and "GX_ANALYTICS_ENABLED=false" in envs
    assert f"PATH={Path(IMAGE_PYTHON).parent}:" in envs


def test_the_documented_build_command_names_the_shared_image():
    assert f"docker build -f deploy/docker/Dockerfile -t {FLEETML_IMAGE} ." in DOCKERFILE.read_text()


def test_the_build_context_ignore_file_keeps_what_the_dockerfile_copies(dockerfile):
    """BuildKit reads <Dockerfile>.dockerignore when the context is the repository root."""
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for keyword, rest in dockerfile:
        if keyword == "COPY":
            for source in rest.split()[:-1]:
                assert source in kept, f"COPY {source} would be excluded from the build context"
                assert (REPO / source).exists(), source
