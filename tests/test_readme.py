"""The README's commands work as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
README = (REPO_ROOT / "README.md").read_text()


def ci_commands() -> list[str]:
    block = re.search(r"<!-- ci-commands -->\s*```bash\n(.*?)```\s*<!-- /ci-commands -->", README, re.S)
    assert block, "README lost its ci-commands block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_readme_opens_with_the_make_commands():
    first_block = README.split("```")[1]
    for command in ("make demo", "make test", "make dev"):
        assert command in first_block


@pytest.mark.slow  # the whole lifecycle, from telemetry to a verified bundle
def test_the_ci_commands_run_against_a_fresh_home(tmp_path):
    home = tmp_path / "fleetml"
    env = {
        **os.environ,
        "FLEETML_HOME": str(home),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    (tmp_path / "dagster_home").mkdir()
    commands = ci_commands()
    assert any(c.startswith("dagster asset materialize") for c in commands)
    for command in commands:
        completed = subprocess.run(["bash", "-c", command], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
        assert completed.returncode == 0, f"{command}\n{completed.stdout[-2000:]}\n{completed.stderr[-4000:]}"
    features = pq.read_table(home / "lake" / "harsh_event" / "window_features" / "2026-11-01.parquet")
    validated = pq.read_table(home / "lake" / "validated_telemetry" / "2026-11-01.parquet")
    assert features.num_rows == validated.num_rows > 0
    assert (home / "refs" / "harsh_event" / "rollout_plan.json").exists()  # the lifecycle ran to its end
    assert completed.stdout.startswith("OK harsh_event 1.1.0")  # the last command: the device-side check
