"""The event window and its classes, as plain constants (no imports: cheap for any caller)."""

import math

SAMPLE_RATE_HZ = 50
WINDOW_SECONDS = 4
SAMPLES_PER_WINDOW = SAMPLE_RATE_HZ * WINDOW_SECONDS
IMU_CHANNELS: tuple[str, ...] = ("ax", "ay", "az", "gx", "gy", "gz")
"""Accelerometer in m/s^2 (x forward, y left, z up in the vehicle frame), gyroscope in rad/s."""
IMU_VALUES_PER_WINDOW = len(IMU_CHANNELS) * SAMPLES_PER_WINDOW
GRAVITY_MPS2 = 9.80665

HARSH_EVENT_CLASSES: tuple[str, ...] = ("harsh_brake", "harsh_accel", "harsh_turn", "collision", "benign")
VEHICLE_CLASSES: tuple[str, ...] = ("light", "medium", "heavy")

# Physical limits of the sensors fitted to the fleet: readings outside them are broken data, not events.
ACCEL_RANGE_MPS2 = 16 * GRAVITY_MPS2
GYRO_RANGE_RADPS = 2000 * math.pi / 180
SPEED_RANGE_KPH = (0.0, 250.0)
