"""How a device's IMU turns vehicle motion into the numbers it uploads.

The vehicle-frame signal is rotated into the device's mounting, offset by its bias, blurred by its
noise and clipped at the sensor's range: the same steps a real MEMS unit in a bracket applies, and
the steps where hardware revisions differ.
"""

import numpy as np

from edge_packaging.telemetry_contract import ACCEL_RANGE_MPS2, GYRO_RANGE_RADPS
from fleet_sim.fleet import Device

_RANGE = np.array([[ACCEL_RANGE_MPS2]] * 3 + [[GYRO_RANGE_RADPS]] * 3, dtype=np.float32)


def measure(
    accel_mps2: np.ndarray, gyro_radps: np.ndarray, device: Device, rng: np.random.Generator
) -> np.ndarray:
    """Device readings float32 [N, 6, T] (ax, ay, az, gx, gy, gz) for vehicle-frame [N, 3, T] inputs.

    Both vectors are rotated by the same mounting, since accelerometer and gyro sit on one chip.
    """
    rotation = device.vehicle_to_device().astype(np.float32)
    imu = np.empty((accel_mps2.shape[0], 6, accel_mps2.shape[-1]), dtype=np.float32)
    np.matmul(rotation, accel_mps2, out=imu[:, :3])
    np.matmul(rotation, gyro_radps, out=imu[:, 3:])
    noise = rng.standard_normal(imu.shape, dtype=np.float32)
    noise *= np.array([[device.accel_noise_mps2]] * 3 + [[device.gyro_noise_radps]] * 3, dtype=np.float32)
    noise += np.array(device.accel_bias_mps2 + device.gyro_bias_radps, dtype=np.float32)[:, None]
    imu += noise
    # Saturation at the sensor's range (ufuncs in place: np.clip's wrapper costs more than the work).
    np.minimum(imu, _RANGE, out=imu)
    return np.maximum(imu, -_RANGE, out=imu)


def gps_speed_kph(true_speed_kph: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """GPS speed at the trigger, float32 [N]: a little noise while moving, and exactly 0 when stopped
    because receivers hold a static fix rather than report drift as speed."""
    noisy = np.clip(true_speed_kph + rng.normal(0.0, 0.5, size=true_speed_kph.shape), 0.0, None)
    return np.where(true_speed_kph > 0, noisy, 0.0).astype(np.float32)
