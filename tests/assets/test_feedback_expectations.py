"""Each kind of bad feedback row is quarantined with its rule; the rest of the batch stays valid."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from assets.feedback_expectations import validate_feedback_batch
from edge_packaging.telemetry_contract import GRAVITY_MPS2, HARSH_EVENT_CLASSES


def feedback_frame(rows: int = 20) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    windows = rng.normal(0, 0.3, size=(rows, 6, 200)).astype(np.float32)
    windows[:, 2] += np.float32(GRAVITY_MPS2)
    scores = rng.dirichlet(np.ones(len(HARSH_EVENT_CLASSES)), size=rows).astype(np.float32)
    start = pd.Timestamp("2026-11-08", tz="UTC")
    return pd.DataFrame(
        {
            "event_id": [f"dev-1-20261108-{i:05d}" for i in range(rows)],
            "device_id": ["dev-1"] * rows,
            "hardware_rev": ["vg-r5"] * rows,
            "model_version": ["1.1.0"] * rows,
            "bundle_sha256": ["ab" * 32] * rows,
            "ts": [start + dt.timedelta(minutes=i) for i in range(rows)],
            "speed_kph": rng.uniform(0, 100, rows).astype(np.float32),
            "imu": list(windows.reshape(rows, -1)),
            "scores": list(scores),
            "predicted_label": [HARSH_EVENT_CLASSES[i % 5] for i in range(rows)],
            "inference_ms": rng.uniform(0.02, 0.2, rows).astype(np.float32),
            "review_label": [HARSH_EVENT_CLASSES[i % 5] if i % 2 else None for i in range(rows)],
        }
    )


@pytest.mark.parametrize(
    ("column", "bad_value", "rule"),
    [
        ("scores", np.array([0.5, 0.5], dtype=np.float32), "scores_one_per_class"),
        ("scores", np.full(5, 0.5, dtype=np.float32), "scores_are_probabilities"),
        ("review_label", "near_miss", "review_label_known"),
        ("predicted_label", "pothole", "predicted_label_known"),
        ("inference_ms", -1.0, "inference_ms_plausible"),
        ("imu", np.full(1200, np.nan, dtype=np.float32), "imu_values_finite"),
        ("bundle_sha256", None, "bundle_sha256_not_null"),
    ],
)
def test_a_bad_row_is_quarantined_with_its_rule(column, bad_value, rule):
    frame = feedback_frame()
    frame.at[3, column] = bad_value
    outcome = validate_feedback_batch(frame, HARSH_EVENT_CLASSES)
    assert len(outcome.valid) == 19 and len(outcome.quarantined) == 1
    assert outcome.quarantined["event_id"].tolist() == [frame.at[3, "event_id"]]
    assert outcome.quarantined["quarantine_reason"].iloc[0].startswith(f"{rule}: ")


def test_unreviewed_rows_pass_and_repeated_events_keep_the_first():
    frame = feedback_frame()
    frame.loc[7, "event_id"] = frame.loc[6, "event_id"]
    outcome = validate_feedback_batch(frame, HARSH_EVENT_CLASSES)
    assert outcome.quarantined["quarantine_reason"].tolist() == [
        f"event_id_unique_in_batch: event_id {frame.loc[6, 'event_id']!r} repeats within the batch"
    ]
    assert outcome.valid["review_label"].isna().sum() == 10
    assert len(outcome.valid) + len(outcome.quarantined) == len(frame)
