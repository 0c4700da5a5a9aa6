"""The code location loads, and its asset graph matches the reviewed snapshot.

A lineage change (a key renamed, a dependency dropped, a check or partitioning changed) fails here
until the snapshot is regenerated with `UPDATE_SNAPSHOT=1 pytest tests/pipelines` and reviewed.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

SNAPSHOT = Path(__file__).with_name("asset_graph_snapshot.json")


def describe_asset_graph(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        partitions = node.partitions_def
        assets[key.to_user_string()] = {
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "group": node.group_name,
            "partitions": type(partitions).__name__ if partitions else None,
            "checks": sorted(
                f"{check.name}{' (blocking)' if graph.get(check).blocking else ''}" for check in node.check_keys
            ),
            "automation": str(node.automation_condition.get_label() or node.automation_condition.name)
            if node.automation_condition
            else None,
        }
    return {
        "assets": assets,
        "jobs": sorted(job.name for job in defs.resolve_all_job_defs() if not job.name.startswith("__")),
        "schedules": sorted(s.name for s in defs.schedules or []),
        "sensors": sorted(s.name for s in defs.sensors or []),
    }


def test_the_code_location_loads_in_a_fresh_process():
    completed = subprocess.run(
        [sys.executable, "-c", "import pipelines.definitions as d; d.defs.resolve_asset_graph()"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    assert completed.returncode == 0, completed.stderr


def test_the_asset_graph_matches_the_snapshot():
    from pipelines.definitions import defs

    actual = describe_asset_graph(defs)
    if os.environ.get("UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    assert actual == json.loads(SNAPSHOT.read_text())


def test_definitions_validate_as_a_whole():
    from pipelines.definitions import defs

    dg.Definitions.validate_loadable(defs)


HEAVY_MODULES = (
    "pyspark", "ray", "dagster_ray", "dagster_pyspark", "great_expectations", "evidently", "onnx", "onnxruntime",
    "sklearn", "skl2onnx", "skops", "matplotlib", "pandas", "numpy", "dagster_k8s",
)


def test_loading_the_code_location_imports_no_heavy_library():
    """They are imported inside the functions that use them: the code server, every run and every
    step load the location, and each of these costs 0.1-6 s (see benchmarks/load_time.py)."""
    probe = (
        "import sys, pipelines.definitions as d; d.defs.resolve_asset_graph(); "
        f"print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == ""


def test_a_process_without_a_main_file_can_import_great_expectations():
    """Run workers and `python -c` have no `__main__.__file__`; there pyspark's Spark Connect check
    exits the process (status 0!) while great-expectations imports it, unless its extra is installed."""
    probe = "import great_expectations; print('imported')"
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert completed.stdout.strip() == "imported", completed.stderr[-2000:]
