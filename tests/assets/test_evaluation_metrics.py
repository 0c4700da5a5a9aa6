"""Thresholds, metrics, slices, bootstrap intervals and figures of the harsh-event evaluation."""

import io
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn import metrics as skm

from assets.evaluation_metrics import (
    apply_thresholds,
    bootstrap_intervals,
    choose_thresholds,
    classification_metrics,
    confusion_matrix_png,
    pr_curves_png,
    slice_metrics,
)
from edge_packaging.telemetry_contract import HARSH_EVENT_CLASSES

THREE = ("harsh_brake", "collision", "benign")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def three_class_proba(brake: list[float], collision: list[float]) -> np.ndarray:
    brake_scores, collision_scores = np.array(brake), np.array(collision)
    benign_scores = np.clip(1 - brake_scores - collision_scores, 0, 1)
    return np.column_stack([brake_scores, collision_scores, benign_scores])


def random_predictions(n_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, probabilities that favour the true class, and predictions that are right ~70% of the time."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, len(HARSH_EVENT_CLASSES), n_rows)
    concentration = np.ones((n_rows, len(HARSH_EVENT_CLASSES)))
    concentration[np.arange(n_rows), y_true] += 2.0
    proba = np.array([rng.dirichlet(alpha) for alpha in concentration])
    wrong = rng.integers(0, len(HARSH_EVENT_CLASSES), n_rows)
    y_pred = np.where(rng.random(n_rows) < 0.7, y_true, wrong)
    return y_true, proba, y_pred


# --- choose_thresholds ---------------------------------------------------------------------------


def test_threshold_is_the_lowest_reaching_the_target_precision():
    # harsh_brake scores, highest first: 0.9 P, 0.85 N, 0.8 P, 0.7 P, 0.5 N, 0.4 P, 0.3 N, 0.2 N
    # precision at each:                1.0,  0.5,  0.67, 0.75, 0.6,  0.67, 0.57, 0.5
    brake = [0.9, 0.8, 0.7, 0.4, 0.85, 0.5, 0.3, 0.2]
    y_true = np.array([0, 0, 0, 0, 2, 2, 2, 1])
    proba = three_class_proba(brake, [0.0] * 7 + [0.6])

    at_75 = choose_thresholds(y_true, proba, THREE, target_precision=0.75)["harsh_brake"]
    assert (at_75.threshold, at_75.precision, at_75.recall, at_75.reached_target) == (0.7, 0.75, 0.75, True)
    # At 0.65 precision dips below the target at 0.5 and recovers at 0.4: the lowest threshold wins.
    at_65 = choose_thresholds(y_true, proba, THREE, target_precision=0.65)["harsh_brake"]
    assert at_65.threshold == 0.4 and at_65.recall == 1.0 and at_65.precision == pytest.approx(2 / 3)


def test_threshold_falls_back_to_max_f1_when_the_target_is_out_of_reach():
    # collision scores, highest first: 0.9 N, 0.6 P, 0.5 N, 0.4 P, 0.1 N -> best F1 2/3 at 0.4
    collision = [0.6, 0.4, 0.9, 0.5, 0.1]
    y_true = np.array([1, 1, 2, 0, 2])
    proba = three_class_proba([0.1, 0.1, 0.0, 0.5, 0.2], collision)

    choice = choose_thresholds(y_true, proba, THREE, target_precision=0.9)["collision"]
    assert (choice.threshold, choice.precision, choice.recall) == (0.4, 0.5, 1.0)
    assert choice.reached_target is False


def test_fallback_class_gets_no_threshold_and_every_other_class_does():
    y_true, proba, _ = random_predictions(500, seed=1)
    choices = choose_thresholds(y_true, proba, HARSH_EVENT_CLASSES, target_precision=0.5)
    assert set(choices) == set(HARSH_EVENT_CLASSES) - {"benign"}
    for choice in choices.values():
        assert 0 < choice.threshold <= 1
        assert choice.reached_target == (choice.precision >= 0.5)


def test_a_class_without_validation_rows_cannot_get_a_threshold():
    proba = three_class_proba([0.9, 0.1], [0.05, 0.1])
    with pytest.raises(ValueError, match="no collision rows"):
        choose_thresholds(np.array([0, 2]), proba, THREE, target_precision=0.8)


# --- apply_thresholds ----------------------------------------------------------------------------

THRESHOLDS = {"harsh_brake": 0.5, "collision": 0.2}


def test_decision_picks_the_class_clearing_its_threshold_by_the_largest_ratio():
    proba = np.array(
        [
            [0.6, 0.3, 0.1],  # both qualify: 0.6/0.5 = 1.2 < 0.3/0.2 = 1.5 -> collision
            [0.55, 0.0, 0.45],  # only harsh_brake qualifies -> harsh_brake
            [0.4, 0.1, 0.5],  # none qualifies -> benign
            [0.5, 0.2, 0.3],  # both exactly at threshold: ratio tie -> first listed, harsh_brake
            [0.45, 0.19, 0.36],  # just below both thresholds -> benign
        ]
    )
    np.testing.assert_array_equal(apply_thresholds(proba, THREE, THRESHOLDS), [1, 0, 2, 0, 2])


def test_fallback_class_need_not_be_last():
    names = ("benign", "harsh_brake", "collision")
    proba = np.array([[0.1, 0.6, 0.3], [0.7, 0.2, 0.1]])
    np.testing.assert_array_equal(apply_thresholds(proba, names, THRESHOLDS), [2, 0])


@pytest.mark.parametrize(
    "thresholds",
    [{"harsh_brake": 0.5}, {**THRESHOLDS, "benign": 0.5}, {"harsh_brake": 0.5, "collision": 0.0}],
)
def test_thresholds_must_cover_exactly_the_non_fallback_classes_within_range(thresholds):
    with pytest.raises(ValueError):
        apply_thresholds(np.full((1, 3), 1 / 3), THREE, thresholds)


def test_chosen_thresholds_feed_the_decision_rule():
    y_true, proba, _ = random_predictions(400, seed=2)
    choices = choose_thresholds(y_true, proba, HARSH_EVENT_CLASSES, target_precision=0.6)
    y_pred = apply_thresholds(proba, HARSH_EVENT_CLASSES, {name: c.threshold for name, c in choices.items()})
    assert set(np.unique(y_pred)) <= set(range(len(HARSH_EVENT_CLASSES)))
    assert np.mean(y_pred == y_true) > 0.4


@st.composite
def decision_problems(draw: st.DrawFn) -> tuple[tuple[str, ...], int, np.ndarray, dict[str, float]]:
    n_classes = draw(st.integers(2, 6))
    names = tuple(f"class_{k}" for k in range(n_classes))
    fallback = draw(st.integers(0, n_classes - 1))
    unit = st.floats(0.0, 1.0, allow_nan=False)
    proba = draw(hnp.arrays(np.float64, (draw(st.integers(1, 30)), n_classes), elements=unit))
    thresholds = {
        name: draw(st.floats(0.0, 1.0, exclude_min=True)) for k, name in enumerate(names) if k != fallback
    }
    return names, fallback, proba, thresholds


@settings(max_examples=200, deadline=None)
@given(decision_problems())
def test_decision_is_always_a_valid_class_index(problem):
    names, fallback, proba, thresholds = problem
    y_pred = apply_thresholds(proba, names, thresholds, fallback_class=names[fallback])
    assert y_pred.shape == (proba.shape[0],)
    assert np.all((y_pred >= 0) & (y_pred < len(names)))
    for row, predicted in zip(proba, y_pred, strict=True):
        if predicted != fallback:
            assert row[predicted] >= thresholds[names[predicted]]


@settings(max_examples=200, deadline=None)
@given(decision_problems(), st.data())
def test_decision_is_the_fallback_when_every_probability_is_below_its_threshold(problem, data):
    names, fallback, proba, thresholds = problem
    below = proba.copy()
    for k, name in enumerate(names):
        if k != fallback:
            below[:, k] = np.nextafter(thresholds[name], 0.0) * proba[:, k]  # proba in [0, 1]: strictly below
    below[:, fallback] = data.draw(st.floats(0.0, 1.0))
    y_pred = apply_thresholds(below, names, thresholds, fallback_class=names[fallback])
    np.testing.assert_array_equal(y_pred, np.full(proba.shape[0], fallback))


# --- classification_metrics ----------------------------------------------------------------------


def test_metrics_agree_with_sklearn_on_random_predictions():
    y_true, proba, y_pred = random_predictions(2000, seed=3)
    metrics = classification_metrics(y_true, y_pred, proba, HARSH_EVENT_CLASSES)

    labels = list(range(len(HARSH_EVENT_CLASSES)))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    assert metrics["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    assert metrics["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    binarized = np.eye(len(labels))[y_true]
    expected_macro_pr_auc = skm.average_precision_score(binarized, proba, average="macro")
    assert metrics["macro_pr_auc"] == pytest.approx(expected_macro_pr_auc)
    for k, name in enumerate(HARSH_EVENT_CLASSES):
        figures = metrics["per_class"][name]
        assert figures["precision"] == pytest.approx(precision[k])
        assert figures["recall"] == pytest.approx(recall[k])
        assert figures["f1"] == pytest.approx(f1[k])
        assert figures["support"] == support[k]
        assert figures["pr_auc"] == pytest.approx(skm.average_precision_score(y_true == k, proba[:, k]))
    assert metrics["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    json.dumps(metrics, allow_nan=False)


def test_absent_class_has_no_pr_auc_and_leaves_the_macro_figures():
    y_true, proba, y_pred = random_predictions(1000, seed=4)
    collision = HARSH_EVENT_CLASSES.index("collision")
    keep = y_true != collision
    metrics = classification_metrics(y_true[keep], y_pred[keep], proba[keep], HARSH_EVENT_CLASSES)

    assert metrics["per_class"]["collision"]["pr_auc"] is None
    assert metrics["per_class"]["collision"]["support"] == 0
    present = [figures["pr_auc"] for name, figures in metrics["per_class"].items() if name != "collision"]
    assert metrics["macro_pr_auc"] == pytest.approx(np.mean(present))
    present_labels = [k for k in range(len(HARSH_EVENT_CLASSES)) if k != collision]
    expected = skm.f1_score(y_true[keep], y_pred[keep], labels=present_labels, average="macro")
    assert metrics["macro_f1"] == pytest.approx(expected)
    json.dumps(metrics, allow_nan=False)


def test_confusion_matrix_rows_are_true_classes_and_columns_predicted():
    y_true = np.array([0, 0, 0, 2])
    y_pred = np.array([1, 1, 0, 2])
    proba = np.full((4, 3), 1 / 3)
    assert classification_metrics(y_true, y_pred, proba, THREE)["confusion_matrix"] == [
        [1, 2, 0],
        [0, 0, 0],
        [0, 0, 1],
    ]


def calibration_case(n_rows: int, seed: int, overconfident: bool) -> tuple[np.ndarray, np.ndarray]:
    """Top-class probability c in [0.3, 1); the top class is right with probability c, or 0.5 when
    `overconfident` (whatever c claims)."""
    rng = np.random.default_rng(seed)
    n_classes = len(HARSH_EVENT_CLASSES)
    confidence = rng.uniform(0.3, 1.0, n_rows)
    top = rng.integers(0, n_classes, n_rows)
    proba = np.repeat(((1 - confidence) / (n_classes - 1))[:, None], n_classes, axis=1)
    proba[np.arange(n_rows), top] = confidence
    right = rng.random(n_rows) < (0.5 if overconfident else confidence)
    other = (top + rng.integers(1, n_classes, n_rows)) % n_classes
    return np.where(right, top, other), proba


def test_expected_calibration_error_is_small_when_calibrated_and_large_when_overconfident():
    y_true, proba = calibration_case(20_000, seed=5, overconfident=False)
    calibrated = classification_metrics(y_true, y_true, proba, HARSH_EVENT_CLASSES)["calibration"]
    y_true, proba = calibration_case(20_000, seed=5, overconfident=True)
    overconfident = classification_metrics(y_true, y_true, proba, HARSH_EVENT_CLASSES)["calibration"]

    assert calibrated["ece"] < 0.02
    assert overconfident["ece"] > 0.15
    table = calibrated["reliability"]
    assert [row["bin"] for row in table] == list(range(10))
    assert sum(row["count"] for row in table) == 20_000
    assert table[0]["count"] == 0 and table[0]["accuracy"] is None  # no confidence below 0.3
    assert table[5]["lower"] == 0.5 and table[5]["mean_confidence"] == pytest.approx(0.55, abs=0.01)
    assert table[5]["accuracy"] == pytest.approx(0.55, abs=0.03)


# --- slice_metrics -------------------------------------------------------------------------------


def test_slice_metrics_report_support_recall_and_the_gated_flag():
    slices = pd.DataFrame({"region": ["eu"] * 6 + ["us"] * 2, "vehicle_class": ["light"] * 4 + ["heavy"] * 4})
    y_true = np.array([0, 0, 1, 1, 2, 2, 0, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 2, 2, 2])

    result = slice_metrics(slices, y_true, y_pred, THREE, ["region", "vehicle_class"], min_support=5)

    eu, us = result["region"]["eu"], result["region"]["us"]
    assert (eu["support"], eu["gated"], us["support"], us["gated"]) == (6, True, 2, False)
    assert eu["recall"] == {"harsh_brake": 0.5, "collision": 1.0, "benign": 1.0}
    assert us["recall"] == {"harsh_brake": 0.0, "collision": None, "benign": 1.0}
    # us: harsh_brake F1 0, benign F1 2*1/(1+2) = 2/3; collision is absent and not averaged.
    assert us["macro_f1"] == pytest.approx(1 / 3)
    expected_eu = skm.f1_score(y_true[:6], y_pred[:6], average="macro")
    assert eu["macro_f1"] == pytest.approx(expected_eu)
    assert set(result["vehicle_class"]) == {"light", "heavy"}
    json.dumps(result, allow_nan=False)


def test_slices_are_matched_to_predictions_by_position_not_by_index():
    # A test split filtered out of a larger frame keeps its original, unordered index.
    slices = pd.DataFrame({"region": ["eu", "us", "eu"]}, index=[40, 3, 17])
    result = slice_metrics(slices, np.array([0, 1, 0]), np.array([0, 2, 0]), THREE, ["region"], min_support=1)
    assert result["region"]["eu"]["recall"]["harsh_brake"] == 1.0
    assert result["region"]["us"]["recall"]["collision"] == 0.0


def test_slice_values_are_keyed_as_strings_including_missing_ones():
    slices = pd.DataFrame({"hardware_rev": [3, 3, None]})
    result = slice_metrics(slices, np.array([0, 1, 2]), np.array([0, 1, 2]), THREE, ["hardware_rev"], 1)
    assert set(result["hardware_rev"]) == {"3.0", "nan"}
    assert result["hardware_rev"]["3.0"]["support"] == 2


def test_slice_metrics_need_one_slice_row_per_prediction():
    labels = np.array([0, 1])
    with pytest.raises(ValueError, match="rows"):
        slice_metrics(pd.DataFrame({"region": ["eu"]}), labels, labels, THREE, ["region"], min_support=1)


# --- bootstrap_intervals -------------------------------------------------------------------------


def test_bootstrap_intervals_contain_the_point_estimate():
    y_true, _, y_pred = random_predictions(2000, seed=6)
    figures = ("macro_f1", "recall:collision", "accuracy")
    intervals = bootstrap_intervals(y_true, y_pred, HARSH_EVENT_CLASSES, figures=figures)
    assert intervals["macro_f1"].point == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    collision = HARSH_EVENT_CLASSES.index("collision")
    collision_recall = np.mean(y_pred[y_true == collision] == collision)
    assert intervals["recall:collision"].point == pytest.approx(collision_recall)
    for interval in intervals.values():
        assert interval.low < interval.point < interval.high


def test_bootstrap_is_deterministic_for_a_seed():
    y_true, _, y_pred = random_predictions(500, seed=7)
    first = bootstrap_intervals(y_true, y_pred, HARSH_EVENT_CLASSES, seed=11)
    assert bootstrap_intervals(y_true, y_pred, HARSH_EVENT_CLASSES, seed=11) == first
    assert bootstrap_intervals(y_true, y_pred, HARSH_EVENT_CLASSES, seed=12) != first


def test_bootstrap_interval_narrows_with_more_rows():
    y_true, _, y_pred = random_predictions(300, seed=8)
    few = bootstrap_intervals(y_true, y_pred, HARSH_EVENT_CLASSES)["macro_f1"]
    many = bootstrap_intervals(np.tile(y_true, 16), np.tile(y_pred, 16), HARSH_EVENT_CLASSES)["macro_f1"]
    assert many.point == pytest.approx(few.point)
    assert (many.high - many.low) < 0.5 * (few.high - few.low)  # ~1/4 expected from sqrt(16)


@pytest.mark.parametrize("figure", ["recall:pothole", "specificity:collision", "auc"])
def test_unknown_bootstrap_figures_are_rejected(figure):
    with pytest.raises(ValueError, match="unknown figure"):
        bootstrap_intervals(np.array([0, 1]), np.array([0, 1]), THREE, figures=(figure,))


def test_bootstrap_of_a_class_without_rows_is_refused():
    with pytest.raises(ValueError, match="undefined"):
        bootstrap_intervals(np.array([0, 2]), np.array([0, 1]), THREE, figures=("recall:collision",))


# --- figures -------------------------------------------------------------------------------------


def assert_readable_png(png: bytes) -> None:
    import matplotlib.image

    assert png.startswith(PNG_MAGIC)
    assert 10_000 < len(png) < 150_000
    height, width, _ = matplotlib.image.imread(io.BytesIO(png), format="png").shape
    assert (width, height) == (640, 480)


def test_pr_curves_png_is_a_readable_image():
    y_true, proba, _ = random_predictions(1000, seed=10)
    assert_readable_png(pr_curves_png(y_true, proba, HARSH_EVENT_CLASSES))


def test_confusion_matrix_png_is_a_readable_image():
    y_true, proba, y_pred = random_predictions(1000, seed=10)
    confusion = classification_metrics(y_true, y_pred, proba, HARSH_EVENT_CLASSES)["confusion_matrix"]
    png = confusion_matrix_png(confusion, HARSH_EVENT_CLASSES)
    assert_readable_png(png)
    assert png != confusion_matrix_png(np.eye(len(HARSH_EVENT_CLASSES), dtype=int), HARSH_EVENT_CLASSES)


def test_min_threshold_keeps_thresholds_off_the_floor_of_a_confident_model():
    # Half the positives score 0.9, half 0.01, negatives 0.001: precision is 1.0 down to 0.01.
    y_true = np.array([0] * 20 + [1] * 80)
    proba = np.zeros((100, 2))
    proba[:10, 0], proba[10:20, 0], proba[20:, 0] = 0.9, 0.01, 0.001
    proba[:, 1] = 1 - proba[:, 0]
    names = ("event", "benign")
    unfloored = choose_thresholds(y_true, proba, names, 0.9)["event"]
    floored = choose_thresholds(y_true, proba, names, 0.9, min_threshold=0.3)["event"]
    assert unfloored.threshold == pytest.approx(0.01) and unfloored.recall == 1.0
    assert floored.threshold == pytest.approx(0.9) and floored.reached_target and floored.recall == 0.5
    never = choose_thresholds(y_true, np.column_stack([proba[:, 0] * 0.1, 1 - proba[:, 0] * 0.1]), names, 0.9, min_threshold=0.3)
    assert never["event"].threshold == 0.3 and not never["event"].reached_target
