"""What S3 costs the lake and the model registry against a local folder, through the same code.

Every store resolves local paths and `s3://` URIs alike (`resources/filesystems.py`), so the only
difference measured here is the store. In one run, interleaved so machine noise hits both stores:
  lake      `LakeResource.write_table` of one day's partition of validated telemetry (`--windows`
            contract-shaped windows from tests/telemetry_factory.py), then `read_table` of it;
  registry  promote: `register` a version with a `--model-mb` payload and `set_alias` champion on it;
            load: what a deploy does, `alias` champion then `read_file` of the payload.
Each registry repetition uses a fresh model name, so every one does the same work (a first version,
a first alias) rather than a growing history. S3 is a SeaweedFS server on 127.0.0.1 that the
benchmark starts and stops. It prints the median of `--repeats` for each and the S3/local ratio.

    python benchmarks/stores.py [--repeats 5] [--windows 20000] [--model-mb 1]
"""

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the tests' contract-shaped telemetry

from local_and_s3 import STORES, local_and_s3_roots
from telemetry_factory import telemetry_table

from resources.lake import LakeResource
from resources.model_registry import ModelRegistry

VALIDATED_KEY = ("validated_telemetry",)
DAY = dt.date(2026, 11, 2)
MODEL_FILE = "model.onnx"


def timed(action: Callable[..., None], *args: str) -> float:
    started = time.perf_counter()
    action(*args)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--windows", type=int, default=20_000)
    parser.add_argument("--model-mb", type=float, default=1.0)
    args = parser.parse_args()

    table = telemetry_table(args.windows, DAY)
    payload = os.urandom(int(args.model_mb * 2**20))  # model weights do not compress: neither does this
    seconds: dict[tuple[str, str], list[float]] = {}
    with local_and_s3_roots("fleetml-stores-") as roots:
        lakes = {store: LakeResource(uri=f"{roots[store]}/lake") for store in STORES}
        registries = {store: ModelRegistry(f"{roots[store]}/registry") for store in STORES}

        def lake_write(store: str) -> None:
            lakes[store].write_table(VALIDATED_KEY, DAY.isoformat(), table)

        def lake_read(store: str) -> None:
            assert lakes[store].read_table(VALIDATED_KEY, DAY.isoformat()).num_rows == args.windows

        def promote(store: str, model: str) -> None:
            version = registries[store].register(model, {MODEL_FILE: payload}, {"benchmark": True})
            registries[store].set_alias(
                model, "champion", version.version_id, actor="benchmark", reason="benchmark"
            )

        def load(store: str, model: str) -> None:
            champion = registries[store].alias(model, "champion")
            assert champion is not None
            assert len(registries[store].read_file(model, champion.version_id, MODEL_FILE)) == len(payload)

        for repeat in range(-1, args.repeats):  # repeat -1 warms clients, buckets and caches, untimed
            for store in STORES:
                model = f"harsh_event-{repeat + 1}"
                figures = {
                    "lake write": timed(lake_write, store),
                    "lake read": timed(lake_read, store),
                    "registry promote": timed(promote, store, model),
                    "registry load": timed(load, store, model),
                }
                if repeat >= 0:
                    for what, elapsed in figures.items():
                        seconds.setdefault((what, store), []).append(elapsed)
        partition_mb = Path(lakes["local"].table_uri(VALIDATED_KEY, DAY.isoformat())).stat().st_size / 2**20

    print(
        f"lake: one partition of {args.windows:,} windows ({partition_mb:.1f} MB zstd Parquet);"
        f" registry: a {len(payload) / 2**20:.1f} MB payload; median of {args.repeats}"
    )
    print(f"{'':<18}{'local':>10}{'s3':>10}{'s3/local':>10}")
    for what in ("lake write", "lake read", "registry promote", "registry load"):
        local_s, s3_s = (statistics.median(seconds[what, store]) for store in STORES)
        print(f"{what:<18}{local_s * 1000:>7.1f} ms{s3_s * 1000:>7.1f} ms{s3_s / local_s:>9.1f}x")


if __name__ == "__main__":
    main()
