import numpy as np
import pytest

from edge_packaging.telemetry_contract import VEHICLE_CLASSES
from fleet_sim.fleet import (
    DEFAULT_REVISIONS,
    HARDWARE_REVISIONS,
    REGIONS,
    build_device,
    build_fleet,
    mounting_rotation,
)


def test_fleet_is_deterministic_and_a_larger_fleet_extends_a_smaller_one():
    assert build_fleet(20, seed=3) == build_fleet(20, seed=3)
    assert build_fleet(50, seed=3)[:20] == build_fleet(20, seed=3)
    assert build_fleet(20, seed=3) != build_fleet(20, seed=4)


def test_devices_have_unique_ids_and_known_attributes():
    fleet = build_fleet(200, seed=1)
    assert len({device.device_id for device in fleet}) == 200
    assert {device.hardware_rev for device in fleet} == set(DEFAULT_REVISIONS)
    assert {device.vehicle_class for device in fleet} == set(VEHICLE_CLASSES)
    assert {device.region for device in fleet} == set(REGIONS)


def test_vg_r5_is_catalogued_but_not_fitted_by_default():
    assert "vg-r5" in HARDWARE_REVISIONS
    assert "vg-r5" not in DEFAULT_REVISIONS
    assert {device.hardware_rev for device in build_fleet(40, seed=2, revisions=("vg-r5",))} == {"vg-r5"}


def test_changing_revisions_keeps_the_vehicles():
    default = build_fleet(30, seed=5)
    retrofitted = build_fleet(30, seed=5, revisions=("vg-r5",))
    assert [(d.device_id, d.vehicle_class, d.region) for d in default] == [
        (d.device_id, d.vehicle_class, d.region) for d in retrofitted
    ]


def test_unknown_revision_is_refused_with_the_catalogue():
    with pytest.raises(ValueError, match="vg-r9.*known: vg-r3"):
        build_fleet(3, seed=1, revisions=("vg-r3", "vg-r9"))


def test_per_device_mounting_jitters_around_the_revision():
    fleet = build_fleet(100, seed=1, revisions=("vg-r3",))
    pitches = np.array([device.mounting_ypr_deg[1] for device in fleet])
    nominal = HARDWARE_REVISIONS["vg-r3"].mounting_ypr_deg[1]
    assert abs(pitches.mean() - nominal) < 0.5
    assert 0.5 < pitches.std() < 3.0


def test_mounting_rotation_is_a_rotation_and_follows_the_documented_axes():
    rotation = mounting_rotation(30.0, -10.0, 5.0)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(rotation), 1.0)
    # Yaw 90: the device's x axis points to the vehicle's left (+y).
    np.testing.assert_allclose(mounting_rotation(90.0, 0.0, 0.0)[:, 0], [0.0, 1.0, 0.0], atol=1e-12)
    # Positive pitch tips the device's x axis down towards the road.
    assert mounting_rotation(0.0, 10.0, 0.0)[2, 0] < 0


def test_vehicle_to_device_of_vg_r5_swaps_forward_into_the_lateral_axis():
    device = build_device(0, seed=1, revisions=("vg-r5",))
    braking = device.vehicle_to_device() @ np.array([-5.0, 0.0, 0.0])
    assert abs(braking[0]) < 1.0 and braking[1] > 4.5
