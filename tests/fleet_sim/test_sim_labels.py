import numpy as np

from edge_packaging.telemetry_contract import HARSH_EVENT_CLASSES
from fleet_sim.labels import review_labels


def test_about_sixty_percent_reviewed_with_a_few_percent_wrong():
    rng = np.random.default_rng(0)
    truth = np.array(HARSH_EVENT_CLASSES)[rng.integers(0, len(HARSH_EVENT_CLASSES), size=20_000)]
    labels = review_labels(truth, np.random.default_rng(1))
    reviewed = labels != None  # noqa: E711 - elementwise comparison on an object array
    assert 0.58 < reviewed.mean() < 0.62
    wrong = labels[reviewed] != truth[reviewed]
    assert 0.02 < wrong.mean() < 0.04
    assert set(labels[reviewed]) == set(HARSH_EVENT_CLASSES)


def test_a_wrong_review_never_repeats_the_truth_and_shares_are_configurable():
    truth = np.array(["collision"] * 1000)
    labels = review_labels(truth, np.random.default_rng(2), labelled_share=1.0, label_noise_share=1.0)
    assert (labels != "collision").all()
    assert set(labels) == set(HARSH_EVENT_CLASSES) - {"collision"}
    assert (review_labels(truth, np.random.default_rng(2), labelled_share=0.0) == None).all()  # noqa: E711
