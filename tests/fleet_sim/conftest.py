"""Fixtures of the simulated-fleet tests: one device of the default revision, one of vg-r5."""

import pytest

from fleet_sim.fleet import Device, build_device


@pytest.fixture
def r3_device() -> Device:
    return build_device(0, seed=1, revisions=("vg-r3",))


@pytest.fixture
def r5_device() -> Device:
    return build_device(0, seed=1, revisions=("vg-r5",))
