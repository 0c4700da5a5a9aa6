"""Single-window latency of the signed edge bundle against the Python pipeline, on one thread.

Trains a harsh-event model on simulated telemetry, exports it to ONNX, builds and verifies a signed
bundle (with a throwaway key), then scores the same held-out windows one at a time through
  bundle  onnxruntime on one thread, running the model from the verified bundle (features inside);
  python  numpy features + scikit-learn predict_proba (sklearn/OpenMP held to one thread).
It prints p50/p99 of each, the p50 ratio (goal: bundle >= 10x faster), rows/s at batch 1024 and the
bundle's size.

    python benchmarks/edge_latency.py [--repeats 2000] [--devices 20] [--days 5]
"""

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_packaging.bundle import build_bundle, verify_bundle  # noqa: E402
from edge_packaging.decision import with_fallback  # noqa: E402
from edge_packaging.export import export_edge_model, python_reference_probabilities  # noqa: E402
from edge_packaging.features import compute_window_features  # noqa: E402
from edge_packaging.manifest import utc_timestamp  # noqa: E402
from edge_packaging.profiles import admit_model, load_profile  # noqa: E402
from edge_packaging.runtime import EdgeModelSession, measure_call_latency_ms  # noqa: E402
from edge_packaging.signing import generate_private_key  # noqa: E402
from edge_packaging.telemetry_contract import HARSH_EVENT_CLASSES, imu_windows  # noqa: E402
from fleet_sim.fleet import build_fleet  # noqa: E402
from fleet_sim.telemetry import device_day_rng, simulate_device_day  # noqa: E402

BATCH = 1024


def simulated_windows(devices: int, days: int, seed: int = 11):
    imu, speed, labels = [], [], []
    start = dt.date(2026, 10, 1)
    for device in build_fleet(devices, seed):
        for offset in range(days):
            day = start + dt.timedelta(days=offset)
            upload = simulate_device_day(device, day, device_day_rng(seed, device, day))
            imu.append(imu_windows(upload.table.column("imu")))
            speed.append(upload.table.column("speed_kph").to_numpy())
            labels.append(upload.true_class)
    return np.concatenate(imu), np.concatenate(speed).astype(np.float32), np.concatenate(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--days", type=int, default=5)
    args = parser.parse_args()

    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    imu, speed, true_class = simulated_windows(args.devices, args.days)
    y = np.array([HARSH_EVENT_CLASSES.index(c) if isinstance(c, str) else int(c) for c in true_class])
    split = len(y) * 2 // 3
    classifier = HistGradientBoostingClassifier(max_iter=150, max_leaf_nodes=31, random_state=0)
    classifier.fit(compute_window_features(imu[:split], speed[:split]), y[:split])
    model = export_edge_model(classifier, HARSH_EVENT_CLASSES)
    thresholds = with_fallback({name: 0.5 for name in HARSH_EVENT_CLASSES if name != "benign"}, "benign")
    key = generate_private_key()
    with tempfile.TemporaryDirectory() as directory:
        path = build_bundle(directory, model.SerializeToString(), model_name="harsh_event", model_version="0.0.1",
                            decision_thresholds=thresholds, private_key=key, created_at=utc_timestamp())
        bundle = verify_bundle(path, [key.public_key()])
        bundle_bytes = path.stat().st_size
    session = EdgeModelSession(admit_model(bundle.model_bytes, [load_profile("vg-r3-gateway")]), threads=1)
    held_imu, held_speed = imu[split:], speed[split:]
    one = (held_imu[:1], held_speed[:1])
    assert np.allclose(session.predict_proba(*one), python_reference_probabilities(classifier, *one), atol=1e-4)

    with threadpool_limits(limits=1):
        rotating = iter(range(10**9))

        def python_call():
            i = next(rotating) % len(held_imu)
            python_reference_probabilities(classifier, held_imu[i : i + 1], held_speed[i : i + 1])

        def bundle_call():
            i = next(rotating) % len(held_imu)
            session.predict_proba(held_imu[i : i + 1], held_speed[i : i + 1])

        python_stats = measure_call_latency_ms(python_call, args.repeats)
        bundle_stats = measure_call_latency_ms(bundle_call, args.repeats)
        batch_imu = np.resize(held_imu, (BATCH, *held_imu.shape[1:]))
        batch_speed = np.resize(held_speed, BATCH)
        started = time.perf_counter()
        rounds = 20
        for _ in range(rounds):
            session.predict_proba(batch_imu, batch_speed)
        bundle_rows_s = rounds * BATCH / (time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(rounds):
            python_reference_probabilities(classifier, batch_imu, batch_speed)
        python_rows_s = rounds * BATCH / (time.perf_counter() - started)

    print(f"windows: {len(y)} simulated, {len(held_imu)} held out; {args.repeats} single-window calls each, one thread")
    print(f"bundle  p50 {bundle_stats.p50_ms:.4f} ms  p99 {bundle_stats.p99_ms:.4f} ms  batch {BATCH}: {bundle_rows_s:,.0f} rows/s")
    print(f"python  p50 {python_stats.p50_ms:.4f} ms  p99 {python_stats.p99_ms:.4f} ms  batch {BATCH}: {python_rows_s:,.0f} rows/s")
    print(f"p50 ratio python/bundle: {python_stats.p50_ms / bundle_stats.p50_ms:.1f}x (goal >= 10x); "
          f"p99 ratio {python_stats.p99_ms / bundle_stats.p99_ms:.1f}x")
    print(f"bundle size: {bundle_bytes:,} bytes (model.onnx {len(bundle.model_bytes):,} bytes)")


if __name__ == "__main__":
    main()
