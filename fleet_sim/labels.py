"""Review labels as they arrive from safety managers: for some events only, and not always right.

Reviewers look at a share of uploaded events and give each a class; a small share of their verdicts
name a different class than the true one. The rest of the events stay unlabelled (null), which is the
normal state of fresh telemetry.
"""

import numpy as np

from edge_packaging.telemetry_contract import HARSH_EVENT_CLASSES

LABELLED_SHARE = 0.6
LABEL_NOISE_SHARE = 0.03


def review_labels(
    true_class: np.ndarray,
    rng: np.random.Generator,
    labelled_share: float = LABELLED_SHARE,
    label_noise_share: float = LABEL_NOISE_SHARE,
) -> np.ndarray:
    """Object array of review labels aligned with `true_class`: a class name, or None if unreviewed.

    A mistaken review picks uniformly among the other classes, so noise never repeats the truth.
    """
    class_count = len(HARSH_EVENT_CLASSES)
    truth = np.array([HARSH_EVENT_CLASSES.index(name) for name in true_class], dtype=np.int64)
    reviewed = rng.random(truth.size) < labelled_share
    mistaken = rng.random(truth.size) < label_noise_share
    other = (truth + rng.integers(1, class_count, size=truth.size)) % class_count
    labels = np.array(HARSH_EVENT_CLASSES, dtype=object)[np.where(mistaken, other, truth)]
    labels[~reviewed] = None
    return labels
