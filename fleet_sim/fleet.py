"""The simulated fleet: which devices exist, in which vehicles and regions, on which hardware revision.

A hardware revision fixes the sensor's physics (noise, bias, how the unit sits in its bracket); each
device adds its own small installation jitter on top. Revisions are the realistic source of drift: a
model trained on one mounting sees rotated axes on another.
"""

from dataclasses import dataclass

import numpy as np

from edge_packaging.telemetry_contract import VEHICLE_CLASSES

REGIONS: tuple[str, ...] = ("north", "south", "coastal", "mountain")
DEFAULT_REVISIONS: tuple[str, ...] = ("vg-r3", "vg-r4")

_VEHICLE_CLASS_SHARES = (0.5, 0.3, 0.2)
_REGION_SHARES = (0.3, 0.3, 0.2, 0.2)
# Keeps the fleet's random stream apart from the telemetry streams derived from the same seed.
_FLEET_STREAM = 0xF1EE7


@dataclass(frozen=True)
class HardwareRevision:
    """The sensor physics shared by every unit of one hardware revision.

    Mounting angles are those of the device axes relative to the vehicle (x forward, y left, z up),
    applied yaw, then pitch, then roll; the jitter fields are the spread between installed units.
    """

    name: str
    accel_noise_mps2: float
    gyro_noise_radps: float
    accel_bias_mps2: tuple[float, float, float]
    gyro_bias_radps: tuple[float, float, float]
    mounting_ypr_deg: tuple[float, float, float]
    mounting_jitter_deg: float
    accel_bias_jitter_mps2: float
    gyro_bias_jitter_radps: float


HARDWARE_REVISIONS: dict[str, HardwareRevision] = {
    revision.name: revision
    for revision in (
        HardwareRevision(
            name="vg-r3",
            accel_noise_mps2=0.06,
            gyro_noise_radps=0.005,
            accel_bias_mps2=(0.05, -0.03, 0.08),
            gyro_bias_radps=(0.002, -0.001, 0.003),
            mounting_ypr_deg=(0.0, 2.0, 0.0),
            mounting_jitter_deg=1.5,
            accel_bias_jitter_mps2=0.03,
            gyro_bias_jitter_radps=0.001,
        ),
        HardwareRevision(
            name="vg-r4",
            accel_noise_mps2=0.05,
            gyro_noise_radps=0.004,
            accel_bias_mps2=(-0.02, 0.04, 0.05),
            gyro_bias_radps=(-0.001, 0.002, 0.001),
            mounting_ypr_deg=(1.0, -1.5, 0.5),
            mounting_jitter_deg=1.5,
            accel_bias_jitter_mps2=0.03,
            gyro_bias_jitter_radps=0.001,
        ),
        # A cheaper IMU in a new bracket that holds the unit sideways and tilted: brakes show on the
        # device's y axis and turns on its x axis, so a model trained on r3/r4 mounts degrades.
        HardwareRevision(
            name="vg-r5",
            accel_noise_mps2=0.18,
            gyro_noise_radps=0.015,
            accel_bias_mps2=(0.25, -0.20, 0.30),
            gyro_bias_radps=(0.010, -0.008, 0.012),
            mounting_ypr_deg=(90.0, 12.0, 0.0),
            mounting_jitter_deg=2.0,
            accel_bias_jitter_mps2=0.08,
            gyro_bias_jitter_radps=0.003,
        ),
    )
}


@dataclass(frozen=True)
class Device:
    """One installed edge device: its identity, its vehicle and its calibrated sensor physics.

    `index` is the device's position in the fleet; it keys the device's random streams so that a
    device's telemetry does not depend on which other devices are simulated.
    """

    device_id: str
    index: int
    hardware_rev: str
    vehicle_class: str
    region: str
    mounting_ypr_deg: tuple[float, float, float]
    accel_bias_mps2: tuple[float, float, float]
    gyro_bias_radps: tuple[float, float, float]
    accel_noise_mps2: float
    gyro_noise_radps: float

    def vehicle_to_device(self) -> np.ndarray:
        """The 3x3 matrix taking a vector in the vehicle frame to the device's axes."""
        return mounting_rotation(*self.mounting_ypr_deg).T


def mounting_rotation(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """Device axes expressed in the vehicle frame (columns), for a unit turned by yaw, pitch, roll.

    Angles follow the right-hand rule about z (up), y (left) and x (forward), so a positive pitch
    tips the device's x axis down towards the road.
    """
    yaw, pitch, roll = np.deg2rad([yaw_deg, pitch_deg, roll_deg])
    cz, sz = np.cos(yaw), np.sin(yaw)
    cy, sy = np.cos(pitch), np.sin(pitch)
    cx, sx = np.cos(roll), np.sin(roll)
    rz = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]])
    return rz @ ry @ rx


def build_device(index: int, seed: int, revisions: tuple[str, ...] = DEFAULT_REVISIONS) -> Device:
    """Device number `index` of the fleet seeded by `seed`, on one of `revisions`.

    Every device draws the same amount of randomness in the same order whatever the revisions, so
    changing the revision list changes which hardware a vehicle carries but not the vehicle itself.
    """
    check_revisions(revisions)
    rng = np.random.default_rng([seed, _FLEET_STREAM, index])
    vehicle_class = VEHICLE_CLASSES[rng.choice(len(VEHICLE_CLASSES), p=_VEHICLE_CLASS_SHARES)]
    region = REGIONS[rng.choice(len(REGIONS), p=_REGION_SHARES)]
    revision_draw = rng.random()
    mounting_z, accel_bias_z, gyro_bias_z = rng.standard_normal((3, 3))
    revision = HARDWARE_REVISIONS[revisions[int(revision_draw * len(revisions))]]
    return Device(
        device_id=f"dev-{index:05d}",
        index=index,
        hardware_rev=revision.name,
        vehicle_class=vehicle_class,
        region=region,
        mounting_ypr_deg=_jittered(revision.mounting_ypr_deg, revision.mounting_jitter_deg, mounting_z),
        accel_bias_mps2=_jittered(revision.accel_bias_mps2, revision.accel_bias_jitter_mps2, accel_bias_z),
        gyro_bias_radps=_jittered(revision.gyro_bias_radps, revision.gyro_bias_jitter_radps, gyro_bias_z),
        accel_noise_mps2=revision.accel_noise_mps2,
        gyro_noise_radps=revision.gyro_noise_radps,
    )


def check_revisions(revisions: tuple[str, ...]) -> None:
    """Raise `ValueError` naming the catalogue unless `revisions` is a non-empty list of known names."""
    unknown = [name for name in revisions if name not in HARDWARE_REVISIONS]
    if not revisions or unknown:
        problem = f"unknown hardware revision(s) {', '.join(unknown)}" if unknown else "no hardware revision"
        raise ValueError(f"{problem}; known: {', '.join(HARDWARE_REVISIONS)}")


def build_fleet(n_devices: int, seed: int, revisions: tuple[str, ...] = DEFAULT_REVISIONS) -> list[Device]:
    """The first `n_devices` devices of the fleet seeded by `seed` (a larger fleet extends a smaller)."""
    return [build_device(index, seed, tuple(revisions)) for index in range(n_devices)]


def _jittered(
    nominal: tuple[float, float, float], spread: float, standard_normal: np.ndarray
) -> tuple[float, float, float]:
    """One unit's value: the revision's nominal plus its spread times a standard-normal draw.

    Rounded so that the device prints (and compares) as the calibration sheet would list it.
    """
    x, y, z = (round(float(value), 6) for value in np.add(nominal, spread * standard_normal))
    return (x, y, z)
