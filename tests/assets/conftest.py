from pathlib import Path

import pytest
from platform_resources import store_resources


@pytest.fixture
def platform_resources(tmp_path: Path) -> dict:
    """The local resource set, rooted in a temporary FLEETML_HOME."""
    return store_resources(str(tmp_path))
