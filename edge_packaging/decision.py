"""The decision rule from class probabilities to one class: the same code on devices and in evaluation.

Every class has a threshold in [0, 1]; exactly one class (the fallback, `benign` for harsh events) has
threshold 0. An event class qualifies when its probability reaches its threshold; among the qualifying
classes the one that clears its own threshold by the largest factor (probability / threshold) wins,
ties going to the class listed first. When no event class qualifies, the fallback is decided: its own
probability is never consulted, so "not confident enough" always means "benign".
"""

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def fallback_index(class_names: Sequence[str], thresholds: Mapping[str, float]) -> int:
    """The index of the one class whose threshold is 0."""
    zeros = [k for k, name in enumerate(class_names) if thresholds[name] == 0.0]
    if len(zeros) != 1:
        raise ValueError(f"exactly one class must have threshold 0 (the fallback), got {len(zeros)}: {dict(thresholds)}")
    return zeros[0]


def decide_classes(proba: "np.ndarray", class_names: Sequence[str], thresholds: Mapping[str, float]) -> "np.ndarray":
    """One class index per row of `proba` [N, classes], by the rule of this module."""
    import numpy as np

    if set(thresholds) != set(class_names):
        raise ValueError(f"thresholds must name exactly {sorted(class_names)}, got {sorted(thresholds)}")
    fallback = fallback_index(class_names, thresholds)
    gated = np.array([k for k in range(len(class_names)) if k != fallback], dtype=np.int64)
    limits = np.array([thresholds[class_names[k]] for k in gated], dtype=np.float64)
    if not np.all((limits > 0.0) & (limits <= 1.0)):
        raise ValueError(f"event-class thresholds must be in (0, 1], got {dict(thresholds)}")
    scores = np.asarray(proba, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(class_names):
        raise ValueError(f"proba must have shape [N, {len(class_names)}], got {scores.shape}")
    candidates = scores[:, gated]
    qualifies = candidates >= limits
    with np.errstate(over="ignore"):  # a subnormal threshold overflows the ratio to inf, still the largest
        ratio = np.where(qualifies, candidates / limits, -np.inf)
    return np.where(qualifies.any(axis=1), gated[np.argmax(ratio, axis=1)], fallback)


def with_fallback(thresholds: Mapping[str, float], fallback_class: str) -> dict[str, float]:
    """Event-class thresholds completed with the fallback's 0, as bundles and `decide_classes` take them."""
    if fallback_class in thresholds:
        raise ValueError(f"the fallback class {fallback_class!r} takes no threshold")
    return {**thresholds, fallback_class: 0.0}
