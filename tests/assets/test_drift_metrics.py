"""Feature drift measured by evidently with a fixed method and fixed thresholds."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from assets.drift_metrics import DriftResult, FeatureDrift, measure_drift, stable_report_ids

# Twelve window features with their own scales, like the per-window aggregates of the feature table.
MEANS = np.array([0.0, 9.81, -0.2, 1.5, 30.0, 0.05, 2.0, -1.0, 0.3, 12.0, 0.0, 4.0])
STDS = np.array([0.3, 0.2, 0.5, 1.0, 8.0, 0.02, 0.7, 0.4, 0.1, 3.0, 1.0, 2.5])
COLUMNS = [f"feature_{i:02d}" for i in range(len(MEANS))]
SHIFTED = COLUMNS[:6]


def feature_frame(n_rows: int, seed: int, shift_std: dict[str, float] | None = None) -> pd.DataFrame:
    """NaN-free float32 features drawn from fixed normal distributions, with the named columns moved
    by the given number of their standard deviations."""
    rng = np.random.default_rng(seed)
    values = rng.normal(MEANS, STDS, size=(n_rows, len(MEANS)))
    frame = pd.DataFrame(values.astype(np.float32), columns=COLUMNS)
    for column, shift in (shift_std or {}).items():
        frame[column] += np.float32(shift * STDS[COLUMNS.index(column)])
    return frame


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return feature_frame(2000, seed=1)


@pytest.fixture(scope="module")
def unshifted(reference: pd.DataFrame) -> DriftResult:
    return measure_drift(reference, feature_frame(1500, seed=2), COLUMNS)


@pytest.fixture(scope="module")
def shifted(reference: pd.DataFrame) -> DriftResult:
    current = feature_frame(1500, seed=3, shift_std={c: 1.0 for c in SHIFTED})
    return measure_drift(reference, current, COLUMNS)


# --- verdicts -----------------------------------------------------------------------------------


def test_two_draws_from_the_same_distributions_do_not_drift(unshifted: DriftResult):
    assert not unshifted.dataset_drifted
    assert unshifted.drifted_share <= 0.1
    assert [f.feature for f in unshifted.features] == COLUMNS
    assert all(f.score < 0.1 for f in unshifted.features)
    assert (unshifted.reference_rows, unshifted.current_rows) == (2000, 1500)


def test_half_the_columns_shifted_by_one_std_drift_and_only_they(shifted: DriftResult):
    assert shifted.dataset_drifted
    assert shifted.drifted_share == pytest.approx(0.5)
    assert {f.feature for f in shifted.features if f.drifted} == set(SHIFTED)
    by_name = {f.feature: f for f in shifted.features}
    # A normed Wasserstein distance counts reference standard deviations: a one-std shift scores ~1,
    # where a p-value would be ~0.
    assert all(0.8 < by_name[c].score < 1.2 for c in SHIFTED)
    assert all(by_name[c].score < 0.1 for c in COLUMNS if c not in SHIFTED)


def test_scores_are_evidently_normed_wasserstein_of_each_column(
    reference: pd.DataFrame, shifted: DriftResult
):
    # Re-derived here only to prove each score is read back onto the right column.
    current = feature_frame(1500, seed=3, shift_std={c: 1.0 for c in SHIFTED})
    for feature in shifted.features:
        ref, cur = reference[feature.feature], current[feature.feature]
        expected = stats.wasserstein_distance(ref, cur) / max(float(np.std(ref)), 0.001)
        assert feature.score == pytest.approx(expected, rel=1e-6)


def test_a_device_mounted_at_90_degrees_drifts_on_the_swapped_axes():
    axes = ["accel_x_mps2", "accel_y_mps2", "accel_z_mps2", "gyro_x_dps", "gyro_y_dps", "gyro_z_dps"]
    rng = np.random.default_rng(7)

    def imu(n_rows: int) -> pd.DataFrame:
        means, stds = [0.0, 0.0, 9.81, 0.0, 0.0, 0.0], [0.8, 0.4, 0.3, 2.0, 2.0, 5.0]
        return pd.DataFrame(rng.normal(means, stds, size=(n_rows, 6)).astype(np.float32), columns=axes)

    current = imu(2000)
    # Rotated 90 degrees about y: gravity moves from z to x.
    current[["accel_x_mps2", "accel_z_mps2"]] = current[["accel_z_mps2", "accel_x_mps2"]].to_numpy()

    result = measure_drift(imu(4000), current, axes)

    assert {f.feature for f in result.features if f.drifted} == {"accel_x_mps2", "accel_z_mps2"}
    assert result.drifted_share == pytest.approx(2 / 6)
    assert result.dataset_drifted
    # z scores higher than x: the same move is normed by z's smaller reference spread.
    assert [f.feature for f in result.top_drifted(2)] == ["accel_z_mps2", "accel_x_mps2"]


# --- method and thresholds are fixed, not sample-size defaults ---------------------------------


def test_method_and_thresholds_stay_as_requested_on_a_small_sample():
    reference, current = feature_frame(300, seed=11), feature_frame(200, seed=12)
    columns = COLUMNS[:4]

    # The premise: under 1000 rows, evidently's own default is a p-value test (K-S) at 0.05.
    from evidently import Report
    from evidently.presets import DataDriftPreset

    defaults = Report([DataDriftPreset(columns=columns)]).run(current_data=current, reference_data=reference)
    default_configs = [m["config"] for m in defaults.dict()["metrics"] if "column" in m["config"]]
    assert {(c["method"], c["threshold"]) for c in default_configs} == {("K-S p_value", 0.05)}

    result = measure_drift(reference, current, columns)
    assert (result.method, result.threshold, result.drift_share_threshold) == ("wasserstein", 0.1, 0.3)
    assert {f.threshold for f in result.features} == {0.1}

    psi = measure_drift(reference, current, columns, method="psi", threshold=0.25, drift_share=0.5)
    assert (psi.method, psi.threshold, psi.drift_share_threshold) == ("psi", 0.25, 0.5)
    assert {f.threshold for f in psi.features} == {0.25}


def test_the_result_carries_the_requested_settings(unshifted: DriftResult, shifted: DriftResult):
    for result in (unshifted, shifted):
        assert (result.method, result.threshold, result.drift_share_threshold) == ("wasserstein", 0.1, 0.3)
        assert {f.threshold for f in result.features} == {0.1}


def test_a_lower_drift_share_turns_a_single_drifted_column_into_dataset_drift(reference: pd.DataFrame):
    current = feature_frame(1500, seed=4, shift_std={"feature_03": 2.0})
    strict = measure_drift(reference, current, COLUMNS, drift_share=0.05)
    lenient = measure_drift(reference, current, COLUMNS, drift_share=0.3)
    assert strict.drifted_share == lenient.drifted_share == pytest.approx(1 / 12)
    assert strict.dataset_drifted and not lenient.dataset_drifted


# --- robustness ----------------------------------------------------------------------------------


def test_constant_columns_score_zero_until_the_constant_moves():
    rng = np.random.default_rng(5)
    reference = pd.DataFrame(
        {
            "speed_limit_kph": np.full(400, 50.0, dtype=np.float32),
            "mount_flag": np.zeros(400, dtype=np.float32),
            "jerk_mps3": rng.normal(0, 1, 400).astype(np.float32),
        }
    )
    current = reference.iloc[:250].copy()
    current["mount_flag"] = np.float32(1.0)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = measure_drift(reference, current, list(reference.columns))

    by_name = {f.feature: f for f in result.features}
    assert by_name["speed_limit_kph"] == FeatureDrift("speed_limit_kph", 0.0, 0.1, False)
    assert by_name["mount_flag"].drifted
    assert not by_name["jerk_mps3"].drifted
    assert not [w for w in caught if "invalid value encountered in divide" in str(w.message)]


def test_html_is_evidently_report_with_the_features(shifted: DriftResult):
    assert len(shifted.html) > 10_000
    assert "<html" in shifted.html.lower()
    assert all(c in shifted.html for c in SHIFTED)
    assert "html=" not in repr(shifted)


def test_the_same_data_gives_the_same_report_bytes(reference: pd.DataFrame, shifted: DriftResult):
    """evidently ids every element with a random UUID; the report renumbers them, keeping the links
    between them and the shape of each id."""
    again = measure_drift(reference, feature_frame(1500, seed=3, shift_std={c: 1.0 for c in SHIFTED}), COLUMNS)
    assert again.html == shifted.html
    assert "metric_00000000000000000000000000000000" in shifted.html
    assert '"00000001-0000-7000-8000-000000000000"' in shifted.html


def test_renumbered_ids_keep_their_links_and_leave_other_hex_alone():
    html = (
        'var metric_ab12cd34ef56ab12cd34ef56ab12cd34 = {"id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", '
        '"linked": ["ab12cd34ef56ab12cd34ef56ab12cd34"], "parent": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", '
        '"colour": "#ff00ff"}; /^00000000-0000-0000-0000-000000000000$/'
    )
    assert stable_report_ids(html) == (
        'var metric_00000000000000000000000000000000 = {"id": "00000001-0000-7000-8000-000000000000", '
        '"linked": ["00000000000000000000000000000000"], "parent": "00000001-0000-7000-8000-000000000000", '
        '"colour": "#ff00ff"}; /^00000000-0000-0000-0000-000000000000$/'
    )


def test_top_drifted_orders_by_score(shifted: DriftResult):
    top = shifted.top_drifted(6)
    assert {f.feature for f in top} == set(SHIFTED)
    assert [f.score for f in top] == sorted((f.score for f in top), reverse=True)
    assert shifted.top_drifted(0) == ()
    assert len(shifted.top_drifted(100)) == len(COLUMNS)
    with pytest.raises(ValueError, match="n must be"):
        shifted.top_drifted(-1)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda ref, cur: (ref, cur.drop(columns=["feature_02"]), COLUMNS), "current frame lacks.*02"),
        (lambda ref, cur: (ref.drop(columns=["feature_05"]), cur, COLUMNS), "reference frame lacks.*05"),
        (lambda ref, cur: (ref, cur.iloc[:0], COLUMNS), "current frame is empty"),
        (lambda ref, cur: (ref.iloc[:0], cur, COLUMNS), "reference frame is empty"),
        (lambda ref, cur: (ref, cur, []), "columns is empty"),
        (lambda ref, cur: (ref, cur, ["feature_00", "feature_00"]), "duplicates"),
        (lambda ref, cur: (ref, cur, "feature_00"), "not the string"),
        (lambda ref, cur: (ref, cur.assign(feature_01="x"), COLUMNS), r"'feature_01'\] are not numerical"),
        (lambda ref, cur: (ref, cur.assign(feature_01=np.nan), COLUMNS), r"'feature_01'\] hold no finite"),
    ],
)
def test_bad_input_raises_a_clear_value_error(change, match):
    reference, current, columns = change(feature_frame(50, seed=8), feature_frame(50, seed=9))
    with pytest.raises(ValueError, match=match):
        measure_drift(reference, current, columns)


@pytest.mark.parametrize(
    ("threshold", "drift_share"), [(0.0, 0.3), (float("nan"), 0.3), (0.1, 0.0), (0.1, 1.5)]
)
def test_bad_settings_raise(threshold: float, drift_share: float):
    frame = feature_frame(50, seed=10)
    with pytest.raises(ValueError, match="threshold|drift_share"):
        measure_drift(frame, frame, COLUMNS, threshold=threshold, drift_share=drift_share)


def test_an_unknown_method_is_refused_by_evidently():
    frame = feature_frame(50, seed=10)
    with pytest.raises(ValueError, match="nosuch"):
        measure_drift(frame, frame, COLUMNS[:2], method="nosuch")
