"""Reviews of deployed traffic: safety managers look at what the model flagged, and spot-check the rest.

Once a bundle runs on the devices, reviewers no longer pick events at random: they work through the
events the model flagged (confirming or dismissing each) and sample a smaller share of the events it
let pass as benign, which is how missed events come to light. A reviewed event gets the reviewer's
class, occasionally wrong; an unreviewed event stays unlabelled.
"""

import numpy as np

from edge_packaging.telemetry_contract import HARSH_EVENT_CLASSES
from fleet_sim.labels import LABEL_NOISE_SHARE, review_labels

FLAGGED_REVIEW_SHARE = 0.8
"""Share of the events the model flagged (decided as an event class) that a safety manager reviews."""
SPOT_CHECK_SHARE = 0.2
"""Share of the events the model decided benign that a safety manager spot-checks."""


def review_deployed_events(
    true_class: np.ndarray,
    flagged: np.ndarray,
    rng: np.random.Generator,
    flagged_review_share: float = FLAGGED_REVIEW_SHARE,
    spot_check_share: float = SPOT_CHECK_SHARE,
    label_noise_share: float = LABEL_NOISE_SHARE,
) -> np.ndarray:
    """Object array of review labels aligned with `true_class`: a class name, or None if unreviewed.

    `flagged` marks the events the model decided as an event class. A reviewer gives the true class
    (`benign` when they dismiss the event), mistaken in `label_noise_share` of reviews. The draws do
    not depend on `flagged`, so two models scoring the same traffic see the same reviewer behaviour
    wherever their decisions agree.
    """
    true_class = np.asarray(true_class)
    flagged = np.asarray(flagged, dtype=bool)
    if flagged.shape != true_class.shape:
        raise ValueError("flagged must hold one value per event")
    unknown = set(true_class.tolist()) - set(HARSH_EVENT_CLASSES)
    if unknown:
        raise ValueError(f"unknown class(es) {sorted(unknown)}")
    review_draw = rng.random(true_class.size)
    labels = review_labels(true_class, rng, labelled_share=1.0, label_noise_share=label_noise_share)
    reviewed = review_draw < np.where(flagged, flagged_review_share, spot_check_share)
    labels[~reviewed] = None
    return labels
