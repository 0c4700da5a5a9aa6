import datetime as dt
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import registry_cli
from resources.model_registry import ModelRegistry

REPO = Path(__file__).resolve().parents[2]
MODEL = "harsh_event"


@pytest.fixture
def populated(tmp_path: Path) -> tuple[str, list[str]]:
    """A registry with three versions of the harsh-event model, the first two with metrics."""
    ticks = itertools.count()
    start = dt.datetime(2026, 11, 1, 8, tzinfo=dt.timezone.utc)
    registry = ModelRegistry(
        str(tmp_path / "registry"), clock=lambda: start + dt.timedelta(hours=next(ticks))
    )
    metadata = [
        {"metrics": {"macro_f1": 0.8123456, "recall": 0.9}},
        {"metrics": {"macro_f1": 0.85}},
        {"params": {"max_iter": 200}},
    ]
    ids = [
        registry.register(MODEL, {"model.skops": f"v{n}".encode()}, entry).version_id
        for n, entry in enumerate(metadata, start=1)
    ]
    return str(tmp_path / "registry"), ids


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.registry_cli", *args],
        cwd=REPO,
        env={**os.environ, "USER": "alice", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_promote_list_history_and_rollback_from_the_shell(populated):
    root, (v1, v2, v3) = populated
    assert _cli("--registry", root, "promote", MODEL, v1[:8], "--reason", "first model").returncode == 0
    promoted = _cli(
        "promote", MODEL, v2, "--reason", "better recall", "--run-id", "run-7", "--registry", root
    )
    assert promoted.returncode == 0, promoted.stderr
    assert promoted.stdout.strip() == f"{MODEL}: champion {v1[:12]} -> {v2[:12]}"

    listing = _cli("--registry", root, "list", MODEL)
    assert listing.returncode == 0, listing.stderr
    header, *rows = listing.stdout.splitlines()
    assert header.split()[:2] == ["SEQ", "VERSION"]
    assert rows[0].split()[:2] == ["1", v1[:12]] and "macro_f1=0.8123" in rows[0] and "recall=0.9" in rows[0]
    assert rows[1].split()[-1] == "champion" and "2026-11-01 09:00:00Z" in rows[1]
    assert rows[2].split()[-2:] == ["-", "-"]  # no metrics, no alias

    rolled = _cli("--registry", root, "rollback", MODEL, "--reason", "false alarms on rev C")
    assert rolled.returncode == 0, rolled.stderr
    assert rolled.stdout.strip() == f"{MODEL}: champion {v2[:12]} -> {v1[:12]}"
    pinned = _cli(
        "--registry", root, "rollback", MODEL, "--to", v3[:10], "--alias", "champion", "--reason", "pin"
    )
    assert pinned.returncode == 0, pinned.stderr

    history = _cli("--registry", root, "history", MODEL, "--alias", "champion")
    assert history.returncode == 0, history.stderr
    lines = history.stdout.splitlines()[1:]
    assert [line.split()[3:6] for line in lines] == [
        ["-", v1[:12], "set_alias"],
        [v1[:12], v2[:12], "set_alias"],
        [v2[:12], v1[:12], "rollback"],
        [v1[:12], v3[:12], "rollback"],
    ]
    assert all(line.split()[6] == "alice" for line in lines) and "run-7" in lines[1]
    assert lines[2].endswith("false alarms on rev C")
    assert ModelRegistry(root).alias(MODEL, "champion").version_id == v3


def test_unknown_model_or_version_exits_non_zero_with_one_line(populated):
    root, _ = populated
    unknown_model = _cli("--registry", root, "list", "eco_driving")
    assert unknown_model.returncode == 1 and unknown_model.stdout == ""
    expected = f"error: no model 'eco_driving' in registry {root} (models: {MODEL})"
    assert unknown_model.stderr.strip() == expected
    assert len(unknown_model.stderr.strip().splitlines()) == 1


def test_errors_are_one_line_and_nothing_is_recorded(populated, capsys):
    root, (v1, _, _) = populated
    cases = [
        (["promote", MODEL, "deadbeef00", "--reason", "x"], "has no version deadbeef00"),
        (["promote", MODEL, "abc", "--reason", "x"], "at least 8 hex"),
        (["rollback", MODEL, "--reason", "x"], "no previous version"),
        (["history", "eco_driving"], "no model 'eco_driving'"),
        (["promote", MODEL, v1, "--alias", "../up", "--reason", "x"], "invalid alias"),
    ]
    for arguments, message in cases:
        assert registry_cli.main(["--registry", root, *arguments]) == 1
        error = capsys.readouterr().err
        assert message in error and len(error.strip().splitlines()) == 1
    assert ModelRegistry(root).history(MODEL) == []


def test_promoting_where_an_alias_already_points_records_nothing(populated, capsys):
    root, (v1, _, _) = populated
    assert registry_cli.main(["--registry", root, "promote", MODEL, v1, "--reason", "first"]) == 0
    assert registry_cli.main(["--registry", root, "promote", MODEL, v1, "--reason", "again"]) == 0
    assert "already points at" in capsys.readouterr().out.splitlines()[-1]
    assert len(ModelRegistry(root).history(MODEL)) == 1


def test_the_registry_location_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("FLEETML_REGISTRY_URI", raising=False)
    monkeypatch.setenv("FLEETML_HOME", str(tmp_path / "home"))
    assert registry_cli.default_registry_uri() == str(tmp_path / "home" / "registry")
    monkeypatch.setenv("FLEETML_REGISTRY_URI", "s3://models/registry")
    assert registry_cli.default_registry_uri() == "s3://models/registry"
    monkeypatch.delenv("FLEETML_REGISTRY_URI")
    monkeypatch.delenv("FLEETML_HOME")
    monkeypatch.chdir(tmp_path)
    assert registry_cli.default_registry_uri() == str(tmp_path / ".fleetml" / "registry")


def test_the_cli_finds_the_registry_through_fleetml_home(populated, capsys, monkeypatch):
    root, (v1, _, _) = populated
    monkeypatch.delenv("FLEETML_REGISTRY_URI", raising=False)
    monkeypatch.setenv("FLEETML_HOME", str(Path(root).parent))
    assert registry_cli.main(["list", MODEL]) == 0
    assert v1[:12] in capsys.readouterr().out


def test_a_tampered_history_is_reported_in_one_line_and_nothing_is_recorded(populated, capsys):
    root, (v1, v2, _) = populated
    for version, reason in ((v1, "first"), (v2, "second")):
        assert registry_cli.main(["--registry", root, "promote", MODEL, version, "--reason", reason]) == 0
    history = Path(root) / MODEL / "history.jsonl"
    history.write_bytes(history.read_bytes().replace(b'"reason":"first"', b'"reason":"signed off"'))
    edited = history.read_bytes()
    capsys.readouterr()
    for command in (["list", MODEL], ["history", MODEL], ["rollback", MODEL, "--reason", "undo"]):
        assert registry_cli.main(["--registry", root, *command]) == 1
        error = capsys.readouterr().err
        assert "line 5 does not follow line 4" in error and "tampered registry" in error
        assert len(error.strip().splitlines()) == 1
    assert history.read_bytes() == edited
