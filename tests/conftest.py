import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests import the helpers beside them (tests/telemetry_factory.py) by plain module name.
sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from store_roots import StoreRoot  # noqa: E402

TEST_BUCKET = "fleetml-test"
STORES = ("local", "s3")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real S3-compatible server (SeaweedFS) on 127.0.0.1 for the session, with a test bucket.

    Its credentials go into this process's environment, where every S3 client of the platform reads
    them, and are removed again when the session ends.
    """
    from stack.seaweedfs import SeaweedS3

    with SeaweedS3(tmp_path_factory.mktemp("seaweedfs")) as server:
        server.create_bucket(TEST_BUCKET)
        environment = server.environment()
        saved = {name: os.environ.get(name) for name in environment}
        os.environ.update(environment)
        try:
            yield environment
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture(params=STORES)
def store_root(request: pytest.FixtureRequest, tmp_path: Path) -> StoreRoot:
    """A fresh root for one test, on each kind of store: a temporary folder, then an S3 prefix."""
    if request.param == "local":
        return StoreRoot("local", str(tmp_path))
    request.getfixturevalue("s3_server")
    return StoreRoot("s3", f"s3://{TEST_BUCKET}/{uuid.uuid4().hex[:12]}")
