"""Assembling a labelled training table and splitting it without leakage (no Dagster here)."""

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from assets.model_spec import SplitSpec

SPLITS: tuple[str, ...] = ("train", "validation", "test")


def holdout_devices(device_ids: Sequence[str], share: float, seed: int) -> set[str]:
    """A stable pseudo-random `share` of devices: the same device is held out in every run and as
    the fleet grows, so yesterday's test devices never leak into today's training."""

    def unit_interval(device_id: str) -> float:
        digest = hashlib.sha256(f"{seed}:{device_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    return {device for device in set(device_ids) if unit_interval(device) < share}


def assign_splits(frame: pd.DataFrame, spec: SplitSpec) -> pd.Series:
    """`train`, `validation` or `test` for each row of `frame` (columns `device_id`, `ts`)."""
    days = frame["ts"].dt.tz_convert("UTC").dt.date
    distinct_days = sorted(days.unique())
    if len(distinct_days) <= spec.test_days:
        raise ValueError(
            f"need more than {spec.test_days} days of labelled data to hold out the last {spec.test_days}; "
            f"have {len(distinct_days)}"
        )
    cutoff = distinct_days[-spec.test_days]
    held_out = frame["device_id"].isin(holdout_devices(frame["device_id"].unique(), spec.holdout_device_share, spec.seed))
    late = days >= cutoff
    split = np.where(held_out & late, "test", np.where(~held_out & ~late, "train", "validation"))
    return pd.Series(split, index=frame.index, name="split")


def labelled_rows(features: pd.DataFrame, labels: pd.DataFrame, class_names: Sequence[str]) -> tuple[pd.DataFrame, int]:
    """Features joined with their review labels; unlabelled rows are dropped and counted.

    `labels` has `event_id` and `label` (null where nobody reviewed the event), and may carry more
    columns about the label (its source). A label outside `class_names` cannot reach here:
    validation quarantines it.
    """
    keys = [name for name in ("event_id", "device_id") if name in labels.columns]
    joined = features.merge(labels, on=keys, how="inner", validate="one_to_one")
    labelled = joined[joined["label"].notna()].copy()
    labelled["label_index"] = labelled["label"].map({name: i for i, name in enumerate(class_names)}).astype("int64")
    return labelled.reset_index(drop=True), int(len(joined) - len(labelled))


def with_edge_reviews(labels: pd.DataFrame, reviews: pd.Series) -> pd.DataFrame:
    """Telemetry labels completed with reviewers' labels from edge feedback (`reviews`: review_label
    indexed by (device_id, event_id)). A telemetry label wins where both exist; `label_source` says
    where each came from.

    A review labels an event only when it comes from the device that recorded it: event ids are
    chosen by devices, so one device's upload must not label another device's events."""
    labels = labels.copy()
    keys = pd.MultiIndex.from_arrays([labels["device_id"], labels["event_id"]])
    reviewed = pd.Series(reviews.reindex(keys).to_numpy(), index=labels.index)
    from_edge = labels["label"].isna() & reviewed.notna()
    labels.loc[from_edge, "label"] = reviewed[from_edge]
    labels["label_source"] = np.where(from_edge, "edge_feedback", np.where(labels["label"].notna(), "telemetry", None))
    return labels


def split_summary(frame: pd.DataFrame, class_names: Sequence[str]) -> dict[str, dict[str, int]]:
    """Rows per class in each split, for the asset's metadata."""
    counts = frame.groupby(["split", "label"]).size()
    return {
        split: {name: int(counts.get((split, name), 0)) for name in class_names} | {"total": int((frame["split"] == split).sum())}
        for split in SPLITS
    }
