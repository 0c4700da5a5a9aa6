"""The training table: labels from the right device, and a split that never leaks a device."""

import datetime as dt

import numpy as np
import pandas as pd

from assets.model_spec import SplitSpec
from assets.training_data import assign_splits, labelled_rows, with_edge_reviews

CLASSES = ("benign", "harsh_brake")


def test_a_review_labels_only_the_event_of_the_device_that_sent_it():
    labels = pd.DataFrame(
        {"event_id": ["e1", "e1", "e2"], "device_id": ["dev-a", "dev-b", "dev-a"], "label": [None, None, "benign"]}
    )
    reviews = pd.Series(
        ["harsh_brake", "harsh_brake"],
        index=pd.MultiIndex.from_tuples([("dev-b", "e1"), ("dev-b", "e2")], names=["device_id", "event_id"]),
    )

    completed = with_edge_reviews(labels, reviews)

    assert completed["label"].tolist() == [None, "harsh_brake", "benign"]  # dev-b cannot label dev-a's events
    assert completed["label_source"].tolist() == [None, "edge_feedback", "telemetry"]


def test_features_join_their_labels_by_event_and_device():
    features = pd.DataFrame({"event_id": ["e1", "e1"], "device_id": ["dev-a", "dev-b"], "f": [1.0, 2.0]})
    labels = pd.DataFrame({"event_id": ["e1", "e1"], "device_id": ["dev-a", "dev-b"], "label": ["benign", None]})
    labelled, unlabelled = labelled_rows(features, labels, CLASSES)
    assert labelled[["device_id", "f", "label_index"]].to_dict("records") == [{"device_id": "dev-a", "f": 1.0, "label_index": 0}]
    assert unlabelled == 1


def test_no_device_has_events_in_both_train_and_test():
    rng = np.random.default_rng(3)
    start = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    frame = pd.DataFrame(
        {
            "device_id": [f"dev-{i % 40}" for i in range(2000)],
            "ts": [start + dt.timedelta(days=int(day), hours=1) for day in rng.integers(0, 7, size=2000)],
        }
    )
    spec = SplitSpec()

    split = assign_splits(frame, spec)

    devices = {name: set(frame.loc[split == name, "device_id"]) for name in ("train", "validation", "test")}
    assert devices["train"] and devices["test"]
    assert devices["train"].isdisjoint(devices["test"])
    last_days = sorted(frame["ts"].dt.date.unique())[-spec.test_days:]
    assert set(frame.loc[split == "test", "ts"].dt.date) <= set(last_days)  # test is the latest days only
