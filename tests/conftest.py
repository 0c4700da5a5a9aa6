import os
import sys
from pathlib import Path

# Tests import the helpers beside them (tests/telemetry_factory.py) by plain module name.
sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
