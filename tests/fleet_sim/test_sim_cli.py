import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from edge_packaging.telemetry_contract import TELEMETRY_SCHEMA

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_fleet_sim(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, **(env or {}), "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "fleet_sim", *args]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)


def test_help_lists_the_telemetry_command():
    result = run_fleet_sim("--help")
    assert result.returncode == 0
    assert "telemetry" in result.stdout


def test_telemetry_end_to_end_into_home_and_fleetml_home(tmp_path):
    args = ["telemetry", "--start", "2026-11-01", "--days", "2", "--devices", "2", "--seed", "3"]
    result = run_fleet_sim(*args, "--events-per-device-day", "5", "--home", str(tmp_path / "home"))
    assert result.returncode == 0, result.stderr
    uploads = sorted((tmp_path / "home" / "landing" / "telemetry").rglob("*.parquet"))
    assert len(uploads) == 4
    assert all(pq.read_schema(path).equals(TELEMETRY_SCHEMA) for path in uploads)
    windows = sum(pq.read_metadata(path).num_rows for path in uploads)
    summary = result.stdout.strip()
    assert len(summary.splitlines()) == 1
    assert f"4 files, {windows} windows" in summary and "harsh_brake=" in summary

    env = {"FLEETML_HOME": str(tmp_path / "env")}
    from_env = run_fleet_sim(*args, "--events-per-device-day", "5", env=env)
    assert from_env.returncode == 0, from_env.stderr
    again = sorted((tmp_path / "env" / "landing" / "telemetry").rglob("*.parquet"))
    assert [path.read_bytes() for path in again] == [path.read_bytes() for path in uploads]


def test_unknown_revision_fails_with_a_one_line_reason(tmp_path):
    args = ["telemetry", "--start", "2026-11-01", "--days", "1", "--devices", "1", "--seed", "1"]
    result = run_fleet_sim(*args, "--revisions", "vg-r3,vg-r9", "--home", str(tmp_path))
    assert result.returncode == 2
    assert "unknown hardware revision(s) vg-r9" in result.stderr
    assert not (tmp_path / "landing").exists()
