"""great-expectations rules for a batch of edge feedback (no Dagster here).

The same engine as telemetry (`assets/telemetry_expectations.py`): scalar helper columns derived from
the nested ones, one GX expectation per rule, every failed rule of a row in its quarantine reason.
"""

from collections.abc import Sequence

import numpy as np
import pandas as pd

from assets.telemetry_expectations import (
    RowValidation,
    Rule,
    imu_summary,
    not_null_rule,
    split_by_rules,
    window_rules,
)
from edge_packaging.feedback_contract import FEEDBACK_SCHEMA

FEEDBACK_COLUMNS: tuple[str, ...] = tuple(FEEDBACK_SCHEMA.names)
FEEDBACK_KEY_COLUMNS: tuple[str, ...] = (
    "event_id", "device_id", "hardware_rev", "model_version", "bundle_sha256", "ts", "speed_kph",
    "predicted_label", "inference_ms",
)
PROBABILITY_SUM_TOLERANCE = 1e-3
MAX_INFERENCE_MS = 10_000.0


def _feedback_rules(class_names: Sequence[str]) -> tuple[Rule, ...]:
    names = list(class_names)
    return (
        *(not_null_rule(column) for column in FEEDBACK_KEY_COLUMNS),
        *window_rules(),
        Rule(
            "scores_one_per_class",
            "ExpectColumnValuesToBeBetween",
            {"column": "scores_length", "min_value": len(names), "max_value": len(names)},
            lambda rows: [f"scores holds {n} values, expected {len(names)}" for n in rows["scores_length"]],
        ),
        Rule(
            "scores_are_probabilities",
            "ExpectColumnValuesToBeBetween",
            {"column": "scores_sum", "min_value": 1 - PROBABILITY_SUM_TOLERANCE, "max_value": 1 + PROBABILITY_SUM_TOLERANCE},
            lambda rows: [f"scores sum to {total:.6g}, not 1" for total in rows["scores_sum"]],
        ),
        Rule(
            "predicted_label_known",
            "ExpectColumnValuesToBeInSet",
            {"column": "predicted_label", "value_set": names},
            lambda rows: [f"predicted_label {value!r} is not a class of the model" for value in rows["predicted_label"]],
        ),
        Rule(
            "review_label_known",
            "ExpectColumnValuesToBeInSet",
            {"column": "review_label", "value_set": names},
            lambda rows: [f"review_label {value!r} is not a class of the model" for value in rows["review_label"]],
        ),
        Rule(
            "inference_ms_plausible",
            "ExpectColumnValuesToBeBetween",
            {"column": "inference_ms", "min_value": 0.0, "max_value": MAX_INFERENCE_MS},
            lambda rows: [f"inference_ms {value:.6g} outside [0, {MAX_INFERENCE_MS:g}]" for value in rows["inference_ms"]],
        ),
        Rule(
            "event_id_unique_in_batch",
            "ExpectColumnValuesToBeBetween",
            {"column": "event_id_repeat", "min_value": 0, "max_value": 0},
            lambda rows: [f"event_id {event_id!r} repeats within the batch" for event_id in rows["event_id"]],
        ),
    )


def _scores_summary(scores: pd.Series) -> pd.DataFrame:
    lengths = np.array([len(s) if isinstance(s, (np.ndarray, list, tuple)) else 0 for s in scores], dtype=np.int64)
    sums = np.array(
        [float(np.sum(s)) if isinstance(s, (np.ndarray, list, tuple)) and len(s) else np.nan for s in scores]
    )
    return pd.DataFrame({"scores_length": lengths, "scores_sum": sums})


def validate_feedback_batch(raw: pd.DataFrame, class_names: Sequence[str]) -> RowValidation:
    """Split one batch of edge feedback into valid and quarantined rows (rows in = valid + quarantined)."""
    missing = [column for column in FEEDBACK_COLUMNS if column not in raw.columns]
    if missing:
        raise ValueError(f"edge feedback lacks contract column(s) {', '.join(missing)}")
    frame = raw[[c for c in FEEDBACK_COLUMNS if c not in ("imu", "scores")]].reset_index(drop=True)
    frame = pd.concat([frame, imu_summary(raw["imu"]), _scores_summary(raw["scores"])], axis=1)
    frame["event_id_repeat"] = frame.groupby(frame["event_id"], sort=False, dropna=True).cumcount().reindex(frame.index)
    return split_by_rules(raw, frame, _feedback_rules(class_names), FEEDBACK_COLUMNS)
