"""Live figures from edge feedback (no Dagster here): what reviewers confirmed, what devices measured."""

from collections.abc import Sequence

import numpy as np
import pandas as pd


def _classification(reviewed: pd.DataFrame, class_names: Sequence[str]) -> dict:
    from sklearn.metrics import precision_recall_fscore_support

    if reviewed.empty:
        return {"reviewed": 0, "macro_f1": None, "per_class": {}}
    index = {name: i for i, name in enumerate(class_names)}
    y_true = reviewed["review_label"].map(index).to_numpy()
    y_pred = reviewed["predicted_label"].map(index).to_numpy()
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(len(class_names))), zero_division=0
    )
    present = support > 0
    return {
        "reviewed": int(len(reviewed)),
        "macro_f1": float(f1[present].mean()) if present.any() else None,
        "per_class": {
            name: {"precision": float(precision[k]), "recall": float(recall[k]), "support": int(support[k])}
            for k, name in enumerate(class_names)
        },
    }


EVENT_KEY: tuple[str, ...] = ("device_id", "event_id")


def distinct_events(feedback: pd.DataFrame) -> pd.DataFrame:
    """One row per (device, event, model version): a device that re-sends an event in a later batch
    (a retry, an overlapping window) must not count it twice in live figures and gates."""
    return feedback.drop_duplicates([*EVENT_KEY, "model_version"], keep="last")


def new_reviewed_events(batch: pd.DataFrame, reviewed_before: pd.DataFrame) -> int:
    """Reviewed events of `batch` not reviewed in any earlier batch (both carry `EVENT_KEY` and
    `review_label`): the new labels a retraining trigger may count."""
    reviewed = batch.loc[batch["review_label"].notna(), list(EVENT_KEY)].drop_duplicates()
    before = reviewed_before.loc[reviewed_before["review_label"].notna(), list(EVENT_KEY)].drop_duplicates()
    return int(len(reviewed.merge(before, on=list(EVENT_KEY), how="left", indicator=True).query("_merge == 'left_only'")))


def performance_by_group(feedback: pd.DataFrame, class_names: Sequence[str], group_columns: Sequence[str]) -> dict:
    """Reviewed-event precision/recall per class and macro-F1, per group (`"a|b"` keys), or under
    `"all"` without groups. Only reviewed rows count: an unreviewed decision proves nothing."""
    reviewed = feedback[feedback["review_label"].notna()]
    if not group_columns:
        return {"all": _classification(reviewed, class_names)}
    return {
        "|".join(str(k) for k in (keys if isinstance(keys, tuple) else (keys,))): _classification(group, class_names)
        for keys, group in reviewed.groupby(list(group_columns), sort=True)
    }


def latency_by_revision(feedback: pd.DataFrame) -> dict[str, dict]:
    """On-device inference_ms p50/p99 per hardware revision, against the budget of its device profile."""
    from edge_packaging.profiles import load_profiles, profile_for_hardware_rev

    profiles = load_profiles()
    figures = {}
    for revision, group in feedback.groupby("hardware_rev", sort=True):
        profile = profile_for_hardware_rev(revision, profiles)
        p99 = float(np.percentile(group["inference_ms"], 99))
        figures[revision] = {
            "events": int(len(group)),
            "p50_ms": float(np.percentile(group["inference_ms"], 50)),
            "p99_ms": p99,
            "budget_ms": profile.latency_budget_ms if profile else None,
            "profile": profile.name if profile else None,
            "within_budget": None if profile is None else p99 <= profile.latency_budget_ms,
        }
    return figures


def evaluate_stage_gates(stages: Sequence[dict], feedback: pd.DataFrame, fallback_class: str) -> list[dict]:
    """Each rollout stage's gate on the feedback of the devices reached by then (its own and earlier
    stages' of the same revision): enough reviewed events, false-positive rate (flagged events that
    reviewers dismissed as the fallback class) and latency p99 within their limits."""
    results, reached = [], {}
    for stage in stages:
        revision = stage["hardware_rev"]
        reached.setdefault(revision, set()).update(stage["devices"])
        rows = feedback[feedback["device_id"].isin(reached[revision])]
        reviewed = rows[rows["review_label"].notna()]
        flagged = reviewed[reviewed["predicted_label"] != fallback_class]
        fpr = float((flagged["review_label"] == fallback_class).mean()) if len(flagged) else None
        p99 = float(np.percentile(rows["inference_ms"], 99)) if len(rows) else None
        gate = stage["gate"]
        passed = (
            len(reviewed) >= gate["min_reviewed_events"]
            and fpr is not None
            and fpr <= gate["max_false_positive_rate"]
            and p99 is not None
            and p99 <= gate["max_latency_p99_ms"]
        )
        results.append(
            {
                "hardware_rev": revision,
                "name": stage["name"],
                "devices": len(reached[revision]),
                "reviewed": int(len(reviewed)),
                "false_positive_rate": fpr,
                "latency_p99_ms": p99,
                "passed": bool(passed),
            }
        )
    return results
