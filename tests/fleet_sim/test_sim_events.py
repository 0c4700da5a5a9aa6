"""Physical sanity of the synthesised events, mostly in the vehicle frame (x forward, y left, z up)."""

import numpy as np
import pytest
from signal_maths import moving_mean

from edge_packaging.telemetry_contract import GRAVITY_MPS2, HARSH_EVENT_CLASSES, SAMPLES_PER_WINDOW
from fleet_sim.events import EVENT_KINDS, VehicleMotion, draw_event_kinds, event_class, synthesize_motion
from fleet_sim.fleet import build_fleet
from fleet_sim.sensor import measure

ONE_SECOND = 50


def motion(
    kind: str, vehicle_class: str = "medium", count: int = 200, seed: int = 0, season: str = "default"
) -> VehicleMotion:
    """`count` windows of one kind, in the vehicle frame."""
    return synthesize_motion(np.array([kind] * count), vehicle_class, np.random.default_rng(seed), season)


def event_second_longitudinal(accel_mps2: np.ndarray, sign: float) -> np.ndarray:
    """The strongest one-second mean of forward acceleration in direction `sign`, per window."""
    return sign * (sign * moving_mean(accel_mps2[:, 0], ONE_SECOND)).max(axis=-1)


def test_every_kind_maps_to_a_contract_class_and_shapes_match():
    assert set(EVENT_KINDS.values()) == set(HARSH_EVENT_CLASSES)
    kinds = np.array(list(EVENT_KINDS) * 3)
    vehicle = synthesize_motion(kinds, "light", np.random.default_rng(0))
    assert vehicle.accel_mps2.shape == vehicle.gyro_radps.shape == (len(kinds), 3, SAMPLES_PER_WINDOW)
    assert vehicle.speed_kph.shape == (len(kinds),)
    assert vehicle.accel_mps2.dtype == np.float32
    assert list(event_class(np.array(["pothole", "collision"]))) == ["benign", "collision"]


def test_synthesis_is_seeded():
    kinds = np.array(list(EVENT_KINDS) * 2)
    first = synthesize_motion(kinds, "heavy", np.random.default_rng(9))
    second = synthesize_motion(kinds, "heavy", np.random.default_rng(9))
    np.testing.assert_array_equal(first.accel_mps2, second.accel_mps2)
    np.testing.assert_array_equal(first.gyro_radps, second.gyro_radps)


def test_unknown_kind_season_or_vehicle_is_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown event kind"):
        synthesize_motion(np.array(["near_miss"]), "light", rng)
    with pytest.raises(ValueError, match="unknown season"):
        synthesize_motion(np.array(["pothole"]), "light", rng, season="monsoon")
    with pytest.raises(ValueError, match="unknown vehicle class"):
        synthesize_motion(np.array(["pothole"]), "bus", rng)


def test_gravity_reads_plus_g_on_z_at_rest():
    door_slams = motion("door_slam")
    assert np.allclose(np.median(door_slams.accel_mps2[:, 2], axis=-1), GRAVITY_MPS2, atol=0.2)


def test_harsh_brake_decelerates_for_a_second_and_heavy_vehicles_brake_gentler():
    light = event_second_longitudinal(motion("harsh_brake", "light").accel_mps2, sign=-1)
    heavy = event_second_longitudinal(motion("harsh_brake", "heavy").accel_mps2, sign=-1)
    assert np.median(light) < -3.0
    assert (light < -0.8).all() and (heavy < -0.8).all()
    assert light.mean() < heavy.mean() - 0.7
    assert (motion("harsh_brake").speed_kph > 15).all()


def test_harsh_brake_pitches_the_nose_down():
    brakes = motion("harsh_brake")
    # Nose-down pitch is positive about y (left): the pitch rate rises while the brake bites.
    onset = np.argmin(np.gradient(moving_mean(brakes.accel_mps2[:, 0], 10), axis=-1), axis=-1)
    pitch_rate_at_onset = brakes.gyro_radps[np.arange(len(onset)), 1, onset + 5]
    assert np.median(pitch_rate_at_onset) > 0.02


def test_harsh_accel_pushes_forward_from_lower_speeds():
    launches = motion("harsh_accel", "light")
    assert np.median(event_second_longitudinal(launches.accel_mps2, sign=1)) > 2.5
    assert np.median(launches.speed_kph) < np.median(motion("harsh_brake", "light").speed_kph) / 2


def test_harsh_turn_lateral_acceleration_matches_yaw_rate_times_speed():
    turns = motion("harsh_turn", count=300)
    lateral, yaw_rate = turns.accel_mps2[:, 1], turns.gyro_radps[:, 2]
    in_turn = np.abs(yaw_rate) > 0.5 * np.abs(yaw_rate).max(axis=-1, keepdims=True)
    slope = (lateral * yaw_rate * in_turn).sum(-1) / (yaw_rate * yaw_rate * in_turn).sum(-1)
    ratio = slope / (turns.speed_kph / 3.6)
    # Body roll and road bank add a few percent of g to the lateral reading.
    assert 0.97 < np.median(ratio) < 1.12
    assert np.mean((ratio > 0.85) & (ratio < 1.2)) > 0.9
    peak_lateral = np.abs(moving_mean(lateral, 10)).max(axis=-1)
    assert 3.0 < np.median(peak_lateral) < 6.0


def test_collision_peaks_above_two_g_at_speed_with_rotation(r3_device):
    collisions = motion("collision", "light")
    readings = measure(collisions.accel_mps2, collisions.gyro_radps, r3_device, np.random.default_rng(1))
    peak_mps2 = np.linalg.norm(readings[:, :3], axis=1).max(axis=-1)
    assert (peak_mps2 > 2 * GRAVITY_MPS2).all()
    assert (collisions.speed_kph > 10).all()
    horizontal = np.linalg.norm(collisions.accel_mps2[:, :2], axis=1).max(axis=-1)
    vertical = np.abs(collisions.accel_mps2[:, 2] - GRAVITY_MPS2).max(axis=-1)
    assert np.mean(horizontal > vertical) > 0.8
    assert np.median(np.abs(collisions.gyro_radps).max(axis=(1, 2))) > 0.3


def test_potholes_are_mostly_vertical_and_happen_at_speed():
    potholes = motion("pothole")
    vertical = np.abs(potholes.accel_mps2[:, 2] - GRAVITY_MPS2).max(axis=-1)
    horizontal = np.linalg.norm(potholes.accel_mps2[:, :2], axis=1).max(axis=-1)
    assert np.mean(vertical > horizontal) > 0.8
    assert (potholes.speed_kph >= 20).all()
    # The hardest potholes reach collision-like peaks: the intended overlap.
    assert np.mean(vertical > 2 * GRAVITY_MPS2) > 0.02


def test_door_slam_happens_at_standstill_with_a_spike():
    slams = motion("door_slam")
    assert (slams.speed_kph == 0).all()
    deviation = np.abs(slams.accel_mps2 - np.array([0.0, 0.0, GRAVITY_MPS2], dtype=np.float32)[:, None])
    assert (deviation.max(axis=(1, 2)) > 1.0).all()


def test_dropped_device_falls_freely_then_hits_and_tumbles(r3_device):
    drops = motion("dropped_device")
    readings = measure(drops.accel_mps2, drops.gyro_radps, r3_device, np.random.default_rng(1))
    magnitude = np.linalg.norm(readings[:, :3], axis=1)
    # At least 0.2 s (10 samples) near weightless in every window, then an impact well above g.
    assert (moving_mean(magnitude, 10).min(axis=-1) < 2.0).all()
    assert (magnitude.max(axis=-1) > 2 * GRAVITY_MPS2).all()
    assert (np.linalg.norm(readings[:, 3:], axis=1).max(axis=-1) > 2.0).all()


def test_rough_road_shakes_vertically_more_than_cruising():
    rough = motion("rough_road").accel_mps2[:, 2].std(axis=-1)
    brakes = motion("harsh_brake").accel_mps2[:, 2].std(axis=-1)
    assert np.median(rough) > 1.5 * np.median(brakes)


def test_winter_roughens_the_baseline():
    default = motion("harsh_brake", season="default", seed=5).accel_mps2[:, 2].std(axis=-1)
    winter = motion("harsh_brake", season="winter", seed=5).accel_mps2[:, 2].std(axis=-1)
    assert np.median(winter) > 1.3 * np.median(default)


def test_class_priors_and_winter_rough_road_surge():
    rng = np.random.default_rng(0)
    kinds = np.concatenate([draw_event_kinds(rng, 40.0, "default") for _ in range(500)])
    classes = event_class(kinds)
    shares = {name: np.mean(classes == name) for name in HARSH_EVENT_CLASSES}
    expected = {
        "benign": 0.40,
        "harsh_brake": 0.20,
        "harsh_turn": 0.18,
        "harsh_accel": 0.14,
        "collision": 0.08,
    }
    for name, share in expected.items():
        assert shares[name] == pytest.approx(share, abs=0.015)
    assert len(kinds) / 500 == pytest.approx(40.0, rel=0.03)

    winter = np.concatenate([draw_event_kinds(rng, 40.0, "winter") for _ in range(500)])
    assert len(winter) > 1.3 * len(kinds)
    assert np.mean(winter == "rough_road") > 2.5 * np.mean(kinds == "rough_road")


def test_vg_r5_mounting_moves_braking_onto_the_lateral_axis(r3_device, r5_device):
    brakes = motion("harsh_brake", "light")
    rng = np.random.default_rng(2)
    for device, forward_axis in ((r3_device, 0), (r5_device, 1)):
        readings = measure(brakes.accel_mps2, brakes.gyro_radps, device, rng)
        at_rest = np.median(readings[:, :2, :25], axis=-1, keepdims=True)
        change = moving_mean(readings[:, :2] - at_rest, ONE_SECOND)
        strongest = np.abs(change).max(axis=-1)
        assert np.median(strongest[:, forward_axis]) > 3 * np.median(strongest[:, 1 - forward_axis])


def test_vg_r5_tilt_puts_gravity_on_the_device_x_axis():
    slams = motion("door_slam", count=5)
    rng = np.random.default_rng(3)

    def median_ax_at_rest(revision: str) -> float:
        fleet = build_fleet(15, seed=1, revisions=(revision,))
        readings = [measure(slams.accel_mps2, slams.gyro_radps, device, rng)[:, 0] for device in fleet]
        return float(np.median([np.median(ax) for ax in readings]))

    assert abs(median_ax_at_rest("vg-r3")) < 0.6
    assert median_ax_at_rest("vg-r5") < -1.2
