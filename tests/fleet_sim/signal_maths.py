"""Signal arithmetic the simulated-fleet tests share (imported by plain module name, like
tests/telemetry_factory.py)."""

import numpy as np


def moving_mean(signal: np.ndarray, samples: int) -> np.ndarray:
    """Mean over every run of `samples` consecutive samples along the last axis."""
    cumulative = np.cumsum(signal, axis=-1, dtype=np.float64)
    cumulative = np.concatenate([np.zeros(signal.shape[:-1] + (1,)), cumulative], axis=-1)
    return (cumulative[..., samples:] - cumulative[..., :-samples]) / samples
