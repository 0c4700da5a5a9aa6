"""A deterministic simulated fleet standing in for real vehicles and their edge devices.

Devices (`fleet`) carry a hardware revision whose physical quirks (mounting rotation, bias, noise) are
the real source of drift; events are synthesised as vehicle motion (`events`), measured by a device
(`sensor`), given late and partial review labels (`labels`) and written as telemetry uploads into the
landing zone (`telemetry`). Everything is seeded, so the same seed gives byte-identical uploads.

This package imports no Dagster: the platform only ever sees the files it writes.
"""
