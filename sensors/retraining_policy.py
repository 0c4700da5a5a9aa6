"""When to retrain (no Dagster here): drift, live quality, or enough new labels; one trigger per episode."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetrainPolicy:
    max_drifted_share: float = 0.3
    """A feedback batch with at least this share of drifted features triggers."""
    min_live_macro_f1: float = 0.8
    min_live_recall: float = 0.7
    min_reviewed_for_live: int = 200
    """Live quality is only judged on at least this many reviewed events of the deployed model."""
    new_labels_for_retrain: int = 5000
    cooldown_seconds: float = 6 * 3600
    """After a trigger, signals are consumed without triggering for this long: one drift, one retrain."""


@dataclass(frozen=True)
class Signals:
    """What arrived since the last tick."""

    worst_drift: tuple[float, str] | None = None
    """(drifted share, batch) of the most drifted new batch."""
    live_macro_f1: float | None = None
    live_min_recall: tuple[float, str] | None = None
    """(recall, class) of the weakest class of the deployed model."""
    live_reviewed: int = 0
    live_model_version: str | None = None
    new_labels: int = 0


@dataclass(frozen=True)
class Decision:
    fire: bool
    reasons: tuple[str, ...]
    figures: dict = field(default_factory=dict)
    suppressed_by_cooldown: bool = False


def decide(signals: Signals, labels_since_retrain: int, policy: RetrainPolicy, now_s: float, last_fired_s: float | None) -> Decision:
    """Which thresholds the signals cross, and whether that fires a retrain (not within the cooldown)."""
    reasons, figures = [], {}
    if signals.worst_drift and signals.worst_drift[0] >= policy.max_drifted_share:
        share, batch = signals.worst_drift
        reasons.append(f"drift: {share:.0%} of features drifted in batch {batch} (threshold {policy.max_drifted_share:.0%})")
        figures.update(drifted_share=share, drift_batch=batch)
    if signals.live_reviewed >= policy.min_reviewed_for_live:
        if signals.live_macro_f1 is not None and signals.live_macro_f1 < policy.min_live_macro_f1:
            reasons.append(
                f"live macro-F1 {signals.live_macro_f1:.3f} of {signals.live_model_version} below {policy.min_live_macro_f1}"
            )
            figures["live_macro_f1"] = signals.live_macro_f1
        if signals.live_min_recall and signals.live_min_recall[0] < policy.min_live_recall:
            recall, name = signals.live_min_recall
            reasons.append(f"live recall of {name} {recall:.3f} below {policy.min_live_recall}")
            figures["live_min_recall"] = recall
    labels = labels_since_retrain + signals.new_labels
    if labels >= policy.new_labels_for_retrain:
        reasons.append(f"{labels} new reviewed labels since the last retrain (threshold {policy.new_labels_for_retrain})")
        figures["new_labels"] = labels
    if not reasons:
        return Decision(False, ())
    cooling = last_fired_s is not None and now_s - last_fired_s < policy.cooldown_seconds
    return Decision(not cooling, tuple(reasons), figures, suppressed_by_cooldown=cooling)
