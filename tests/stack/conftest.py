"""The production-like stack (S3, PostgreSQL, Ray by address, Spark standalone), started once per
test session on 127.0.0.1 and stopped at its end."""

from collections.abc import Iterator

import pytest

from stack.local_stack import LocalStack
from stack.processes import alive


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The whole stack; at the end of the session, every process it started must be gone."""
    stack = LocalStack(tmp_path_factory.mktemp("stack"))
    with stack:
        yield stack
        pids = stack.pids()
    assert pids, "the running stack reported no process"
    assert alive(pids) == [], f"processes of the stack survived its stop: {alive(pids)}"


@pytest.fixture
def stack_environment(local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This test's process environment pointed at the stack (restored afterwards)."""
    environment = local_stack.environment()
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return environment
