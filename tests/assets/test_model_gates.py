"""Blessing gates: absolute floors on the candidate and no slice regression against the champion."""

import numpy as np
import pandas as pd
import pytest

from assets.evaluation_metrics import classification_metrics, slice_metrics
from assets.model_gates import GateSpec, absolute_gate_failures, slice_regression_failures
from edge_packaging.telemetry_contract import HARSH_EVENT_CLASSES

SPEC = GateSpec(
    min_macro_f1=0.7,
    min_recall={"collision": 0.8, "harsh_brake": 0.6},
    slice_columns=("region",),
    max_slice_regression=0.05,
    min_slice_support=30,
)


def metrics_of(confusion: list[list[int]]) -> dict:
    """`classification_metrics` of predictions laid out as `confusion` (rows true, columns predicted)."""
    cells = np.asarray(confusion)
    n_classes = cells.shape[0]
    y_true = np.repeat(np.repeat(np.arange(n_classes), n_classes), cells.ravel())
    y_pred = np.repeat(np.tile(np.arange(n_classes), n_classes), cells.ravel())
    proba = np.eye(n_classes)[y_pred]
    return classification_metrics(y_true, y_pred, proba, HARSH_EVENT_CLASSES)


def diagonal_confusion(correct: list[int], benign_column: bool = True) -> list[list[int]]:
    """100 rows per class; `correct[k]` of class k predicted right, the rest predicted benign."""
    benign = HARSH_EVENT_CLASSES.index("benign")
    confusion = np.zeros((len(correct), len(correct)), dtype=int)
    for k, right in enumerate(correct):
        confusion[k, k] += right
        confusion[k, benign if benign_column else (k + 1) % len(correct)] += 100 - right
    return confusion.tolist()


def slice_figures(macro_f1: float, support: int = 100) -> dict:
    return {"support": support, "macro_f1": macro_f1, "recall": {}, "gated": support >= 30}


# --- absolute floors -----------------------------------------------------------------------------


def test_a_strong_candidate_clears_the_absolute_floors():
    assert absolute_gate_failures(metrics_of(diagonal_confusion([95, 92, 90, 93, 100])), SPEC) == []


def test_a_weak_candidate_fails_macro_f1_by_its_shortfall():
    metrics = metrics_of(diagonal_confusion([60, 40, 50, 85, 100]))
    assert metrics["macro_f1"] < SPEC.min_macro_f1

    failures = absolute_gate_failures(metrics, SPEC)

    macro = next(failure for failure in failures if failure.gate == "macro_f1_floor")
    assert macro.figure == "macro_f1"
    assert (macro.value, macro.limit) == (metrics["macro_f1"], 0.7)
    assert macro.shortfall == pytest.approx(0.7 - metrics["macro_f1"])
    assert macro.message == (
        f"macro-F1 {metrics['macro_f1']:.2f} is {0.7 - metrics['macro_f1']:.2f} below the floor 0.70"
    )
    assert [failure.gate for failure in failures] == ["macro_f1_floor"]  # collision 0.85, brake 0.60 pass


def test_a_collision_recall_failure_names_collision():
    failures = absolute_gate_failures(metrics_of(diagonal_confusion([95, 92, 90, 71, 100])), SPEC)

    assert len(failures) == 1
    (failure,) = failures
    assert (failure.gate, failure.figure) == ("recall_floor", "recall:collision")
    assert failure.value == pytest.approx(0.71) and failure.shortfall == pytest.approx(0.09)
    assert failure.message == "recall of collision 0.71 is 0.09 below the floor 0.80"


def test_messages_show_enough_decimals_to_tell_a_near_miss_from_the_floor():
    failures = absolute_gate_failures(
        {"macro_f1": 0.6999, "per_class": {}},
        GateSpec(0.7, {}, (), 0.05, 30),
    )
    assert failures[0].message == "macro-F1 0.6999 is 0.0001 below the floor 0.7000"


def test_a_recall_floor_on_a_class_without_evaluation_rows_fails():
    confusion = diagonal_confusion([95, 92, 90, 0, 100])
    confusion[3] = [0, 0, 0, 0, 0]
    (failure,) = absolute_gate_failures(metrics_of(confusion), SPEC)
    assert failure.figure == "recall:collision"
    assert "no collision rows" in failure.message


def test_a_recall_floor_on_an_unknown_class_is_a_configuration_error():
    spec = GateSpec(0.5, {"pothole": 0.5}, (), 0.05, 30)
    with pytest.raises(ValueError, match="pothole"):
        absolute_gate_failures(metrics_of(diagonal_confusion([90] * 5)), spec)


def test_gate_spec_rejects_out_of_range_limits_and_does_not_follow_changes_to_its_inputs():
    with pytest.raises(ValueError, match="collision"):
        GateSpec(0.5, {"collision": 1.2}, (), 0.05, 30)
    with pytest.raises(ValueError, match="max_slice_regression"):
        GateSpec(0.5, {}, (), -0.01, 30)
    floors = {"collision": 0.8}
    spec = GateSpec(0.5, floors, ("region",), 0.05, 30)
    floors["collision"] = 0.0
    assert spec.min_recall["collision"] == 0.8


# --- slice regression ----------------------------------------------------------------------------


def test_a_slice_regression_beyond_tolerance_fails():
    champion = {"region": {"eu": slice_figures(0.80), "us": slice_figures(0.90)}}
    candidate = {"region": {"eu": slice_figures(0.70), "us": slice_figures(0.91)}}

    (failure,) = slice_regression_failures(candidate, champion, SPEC)

    assert (failure.gate, failure.figure) == ("slice_regression", "macro_f1[region=eu]")
    assert failure.value == 0.70 and failure.limit == pytest.approx(0.75)
    assert failure.shortfall == pytest.approx(0.05)
    assert failure.message == "macro-F1 on region=eu 0.70 vs champion 0.80: 0.05 beyond the 0.05 tolerance"


def test_a_slice_regression_within_tolerance_passes():
    champion = {"region": {"eu": slice_figures(0.80)}}
    candidate = {"region": {"eu": slice_figures(0.76)}}
    assert slice_regression_failures(candidate, champion, SPEC) == []


def test_small_slices_are_not_gated():
    champion = {"region": {"apac": slice_figures(0.90, support=29)}}
    candidate = {"region": {"apac": slice_figures(0.10, support=29)}}
    assert slice_regression_failures(candidate, champion, SPEC) == []


def test_slices_missing_from_the_champion_are_not_compared():
    champion = {"region": {"eu": slice_figures(0.80)}}
    candidate = {"region": {"eu": slice_figures(0.80), "latam": slice_figures(0.10)}}
    assert slice_regression_failures(candidate, champion, SPEC) == []


def test_without_a_champion_there_are_no_slice_failures():
    candidate = {"region": {"eu": slice_figures(0.10)}}
    assert slice_regression_failures(candidate, None, SPEC) == []


def test_a_gated_slice_column_missing_from_the_candidate_is_a_configuration_error():
    with pytest.raises(ValueError, match="region"):
        slice_regression_failures({}, {"region": {"eu": slice_figures(0.8)}}, SPEC)


def test_slice_gate_reads_slice_metrics_of_both_models_on_the_same_evaluation_set():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, len(HARSH_EVENT_CLASSES), 400)
    slices = pd.DataFrame({"region": np.where(np.arange(400) < 200, "eu", "us")})
    slices.loc[:9, "region"] = "apac"
    champion_pred = y_true.copy()
    candidate_pred = y_true.copy()
    candidate_pred[200:300] = (y_true[200:300] + 1) % len(HARSH_EVENT_CLASSES)  # half of us wrong
    candidate_pred[:10] = (y_true[:10] + 1) % len(HARSH_EVENT_CLASSES)  # all of the tiny apac wrong

    def figures(y_pred: np.ndarray) -> dict:
        return slice_metrics(slices, y_true, y_pred, HARSH_EVENT_CLASSES, ["region"], SPEC.min_slice_support)

    failures = slice_regression_failures(figures(candidate_pred), figures(champion_pred), SPEC)

    assert [failure.figure for failure in failures] == ["macro_f1[region=us]"]
    assert failures[0].message.startswith("macro-F1 on region=us 0.")
    assert "vs champion 1.00" in failures[0].message
