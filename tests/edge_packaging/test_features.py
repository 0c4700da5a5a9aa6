import numpy as np
import pytest

from edge_packaging.features import FEATURE_NAMES, compute_window_features
from edge_packaging.telemetry_contract import GRAVITY_MPS2, SAMPLE_RATE_HZ, SAMPLES_PER_WINDOW

G = np.float32(GRAVITY_MPS2)


def at_rest(n: int = 1) -> np.ndarray:
    windows = np.zeros((n, 6, SAMPLES_PER_WINDOW), dtype=np.float32)
    windows[:, 2] = G
    return windows


def features_of(windows: np.ndarray, speed_kph: float = 50.0) -> dict[str, float]:
    values = compute_window_features(windows, np.full(len(windows), speed_kph, dtype=np.float32))
    assert values.dtype == np.float32 and values.shape == (len(windows), len(FEATURE_NAMES))
    return dict(zip(FEATURE_NAMES, values[0].tolist(), strict=True))


def test_feature_names_are_unique():
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)


def test_a_device_at_rest_shows_gravity_and_nothing_else():
    f = features_of(at_rest(), speed_kph=0.0)
    assert f["accel_mag_max_mps2"] == pytest.approx(GRAVITY_MPS2, rel=1e-6)
    assert f["az_mean"] == pytest.approx(GRAVITY_MPS2, rel=1e-6)
    for name in ("accel_mag_energy", "jerk_x_max_abs_mps3", "time_horizontal_above_3mps2_s", "time_mag_above_2g_s",
                 "yaw_rate_max_abs_radps", "speed_change_est_kph", "az_high_band_energy", "ax_std"):
        assert f[name] == pytest.approx(0.0, abs=1e-5), name


def test_one_second_of_braking_at_5_mps2():
    windows = at_rest()
    windows[0, 0, 50:100] = -5.0
    f = features_of(windows)
    assert f["ax_min"] == -5.0
    assert f["time_horizontal_above_3mps2_s"] == pytest.approx(1.0)
    assert f["time_horizontal_above_6mps2_s"] == 0.0
    assert f["speed_change_est_kph"] == pytest.approx(-5.0 * 1.0 * 3.6, rel=1e-5)
    assert f["jerk_x_max_abs_mps3"] == pytest.approx(5.0 * SAMPLE_RATE_HZ)


def test_an_impact_spike_counts_time_above_2g_and_a_fall_counts_time_below_0_3g():
    windows = at_rest(2)
    windows[0, 0, 100:105] = 40.0
    windows[1, :3, 60:75] = 0.0
    values = compute_window_features(windows, np.zeros(2, dtype=np.float32))
    f = {name: values[:, i] for i, name in enumerate(FEATURE_NAMES)}
    assert f["time_mag_above_2g_s"][0] == pytest.approx(5 / SAMPLE_RATE_HZ)
    assert f["accel_mag_max_mps2"][0] == pytest.approx(np.hypot(40.0, GRAVITY_MPS2), rel=1e-6)
    assert f["time_mag_below_0_3g_s"][1] == pytest.approx(15 / SAMPLE_RATE_HZ)
    assert f["accel_mag_min_mps2"][1] == 0.0


def test_yaw_rate_and_gyro_magnitude_peaks():
    windows = at_rest()
    windows[0, 5, 80:120] = -0.4
    windows[0, 3, 100] = 0.3
    f = features_of(windows)
    assert f["yaw_rate_max_abs_radps"] == pytest.approx(0.4)
    assert f["gyro_mag_max_radps"] == pytest.approx(0.5)


def test_high_band_energy_separates_vibration_from_slow_motion():
    t = np.arange(SAMPLES_PER_WINDOW) / SAMPLE_RATE_HZ
    windows = at_rest(2)
    windows[0, 2] += np.sin(2 * np.pi * 20 * t).astype(np.float32)  # rough road at 20 Hz
    windows[1, 2] += np.sin(2 * np.pi * 0.5 * t).astype(np.float32)  # a slow pitch
    values = compute_window_features(windows, np.zeros(2, dtype=np.float32))
    high = values[:, FEATURE_NAMES.index("az_high_band_energy")]
    assert high[0] > 0.3
    assert high[1] < 0.001


def test_features_match_a_float64_reference_of_the_statistics():
    rng = np.random.default_rng(3)
    windows = rng.normal(0, 2, size=(50, 6, SAMPLES_PER_WINDOW)).astype(np.float32)
    values = compute_window_features(windows, rng.uniform(0, 100, 50).astype(np.float32))
    reference = windows.astype(np.float64)
    np.testing.assert_allclose(values[:, FEATURE_NAMES.index("gy_std")], reference[:, 4].std(axis=-1), rtol=1e-5)
    magnitude = np.sqrt((reference[:, :3] ** 2).sum(axis=1))
    energy = ((magnitude - GRAVITY_MPS2) ** 2).mean(axis=-1)
    np.testing.assert_allclose(values[:, FEATURE_NAMES.index("accel_mag_energy")], energy, rtol=1e-5)


@pytest.mark.parametrize("shape", [(2, 6, 100), (2, 5, 200), (1200,)])
def test_wrong_shapes_are_refused(shape):
    with pytest.raises(ValueError, match="imu must be"):
        compute_window_features(np.zeros(shape, dtype=np.float32), np.zeros(2, dtype=np.float32))
