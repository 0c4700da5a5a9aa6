"""Sensors of the code location: the edge-feedback landing zone, retraining, run-failure alerts."""
