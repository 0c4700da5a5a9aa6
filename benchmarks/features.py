"""Throughput of the feature engines, and how it scales with partition size.

For each size it times, in one run on the same windows:
  numpy   plain `compute_window_features` over the in-memory arrays (the practical limit: no I/O,
          no conversion);
  pandas  the in-process engine, from the Arrow table of a validated partition to the feature table;
  spark   the Spark engine (local[2]), from the Parquet partition in the lake to the feature table
          on the driver (the session is started and warmed up before timing).
It prints windows/s, the pandas/numpy time ratio (goal <= 2x) and the scaling exponent of each engine
between sizes (time ~ size^k; goal k <= 1.05).

    python benchmarks/features.py [--sizes 10000,100000,1000000] [--engines numpy,pandas,spark]

Feature cost does not depend on the signal values, so the windows are random noise around gravity
(tiled from one block, which keeps generation cheap at a million windows).
"""

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assets.feature_engines import compute_features_pandas, compute_features_spark  # noqa: E402
from edge_packaging.features import compute_window_features  # noqa: E402
from edge_packaging.telemetry_contract import GRAVITY_MPS2, SAMPLES_PER_WINDOW, imu_column  # noqa: E402
from resources.spark import SparkResource, local_spark_config  # noqa: E402

BLOCK_WINDOWS = 10_000


def windows_of(size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    block = rng.normal(0, 1.5, size=(BLOCK_WINDOWS, 6, SAMPLES_PER_WINDOW)).astype(np.float32)
    block[:, 2] += np.float32(GRAVITY_MPS2)
    windows = np.concatenate([block] * math.ceil(size / BLOCK_WINDOWS))[:size]
    speed_kph = rng.uniform(0, 120, size=size).astype(np.float32)
    return windows, speed_kph


def partition_table(windows: np.ndarray, speed_kph: np.ndarray) -> pa.Table:
    n = len(windows)
    ts = pa.array(np.full(n, 1_762_000_000_000_000, dtype=np.int64)).cast(pa.timestamp("us", tz="UTC"))
    return pa.table(
        {
            "event_id": pa.array([f"e{i:08d}" for i in range(n)]),
            "device_id": pa.array(["dev-1"] * n),
            "hardware_rev": pa.array(["vg-r3"] * n),
            "vehicle_class": pa.array(["light"] * n),
            "region": pa.array(["north"] * n),
            "ts": ts,
            "speed_kph": pa.array(speed_kph),
            "imu": imu_column(windows),
        }
    )


def time_numpy(windows: np.ndarray, speed_kph: np.ndarray) -> float:
    started = time.perf_counter()
    compute_window_features(windows, speed_kph)
    return time.perf_counter() - started


def time_pandas(table: pa.Table) -> float:
    started = time.perf_counter()
    compute_features_pandas(table)
    return time.perf_counter() - started


def time_spark(spark, table: pa.Table, workdir: Path) -> float:
    path = workdir / f"validated-{table.num_rows}.parquet"
    pq.write_table(table, path, row_group_size=16_384)
    started = time.perf_counter()
    result = compute_features_spark(spark, str(path))
    elapsed = time.perf_counter() - started
    assert result.num_rows == table.num_rows
    path.unlink()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--engines", default="numpy,pandas,spark")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    engines = args.engines.split(",")
    spark = None
    if "spark" in engines:
        spark = SparkResource(spark_config=local_spark_config(sys.executable)).spark_session
    seconds: dict[str, dict[int, float]] = {engine: {} for engine in engines}
    with tempfile.TemporaryDirectory() as workdir:
        if spark is not None:  # start the JVM and the Python workers before anything is timed
            warm_windows, warm_speed = windows_of(2_000)
            time_spark(spark, partition_table(warm_windows, warm_speed), Path(workdir))
        for size in sizes:
            windows, speed_kph = windows_of(size)
            table = partition_table(windows, speed_kph)
            for engine in engines:
                if engine == "numpy":
                    seconds[engine][size] = time_numpy(windows, speed_kph)
                elif engine == "pandas":
                    seconds[engine][size] = time_pandas(table)
                else:
                    seconds[engine][size] = time_spark(spark, table, Path(workdir))
                rate = size / seconds[engine][size]
                print(f"{engine:>6} {size:>9,} windows: {seconds[engine][size]:8.2f} s  {rate:>10,.0f} windows/s", flush=True)
            del windows, speed_kph, table
    print()
    for engine in engines:
        exponents = [
            math.log(seconds[engine][b] / seconds[engine][a]) / math.log(b / a) for a, b in zip(sizes, sizes[1:])
        ]
        print(f"{engine:>6} scaling exponent between sizes: {', '.join(f'{k:.3f}' for k in exponents)} (goal <= 1.05)")
    if "numpy" in engines and "pandas" in engines:
        ratios = ", ".join(f"{seconds['pandas'][s] / seconds['numpy'][s]:.2f}x" for s in sizes)
        print(f"pandas engine time / plain numpy time at {args.sizes}: {ratios} (goal <= 2x)")
    if "numpy" in engines and "spark" in engines:
        ratios = ", ".join(f"{seconds['spark'][s] / seconds['numpy'][s]:.2f}x" for s in sizes)
        print(f"spark engine time / plain numpy time at {args.sizes}: {ratios}")


if __name__ == "__main__":
    main()
