"""Load time of the code location relative to `import dagster`.

Each figure is the median wall time of several fresh interpreter processes. The ratio is what matters
(the machine is noisy): heavy libraries must be imported inside the functions that use them, so that
the code server, every run and every step load quickly. Goal: ratio <= 1.5.

    python benchmarks/load_time.py [--repeats 7]
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BASELINE = "import dagster"
CODE_LOCATION = "import pipelines.definitions"


def time_import(statement: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True, cwd=REPO_ROOT)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    time_import(CODE_LOCATION)  # warm the bytecode cache
    baseline, location = [], []
    for _ in range(args.repeats):  # interleaved, so machine noise hits both alike
        baseline.append(time_import(BASELINE))
        location.append(time_import(CODE_LOCATION))
    baseline_s, location_s = statistics.median(baseline), statistics.median(location)
    print(f"import dagster:               {baseline_s:.2f} s (median of {args.repeats})")
    print(f"import pipelines.definitions: {location_s:.2f} s (median of {args.repeats})")
    print(f"ratio: {location_s / baseline_s:.2f}x (goal <= 1.5x)")


if __name__ == "__main__":
    main()
