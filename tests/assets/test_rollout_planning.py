"""A rollout starts with a 1% canary and widens through fixed stages, each to new devices."""

from assets.rollout_planning import plan_rollout

DEVICES = {"vg-r3": [f"r3-{i:03d}" for i in range(200)], "vg-r4": [f"r4-{i}" for i in range(3)], "vg-r5": ["r5-0"]}


def plan(**options):
    return plan_rollout(DEVICES, ["vg-r3", "vg-r4"], {"vg-r3": 1.0, "vg-r4": 1.0}, 0.1, **options)


def test_a_large_fleet_goes_1_10_50_100_percent_to_new_devices_each_stage():
    stages = [stage for stage in plan() if stage.hardware_rev == "vg-r3"]
    assert [stage.name for stage in stages] == ["canary", "early", "half", "full"]
    assert [len(stage.devices) for stage in stages] == [2, 18, 80, 100]  # 1%, 10%, 50%, 100% of 200
    reached = [device for stage in stages for device in stage.devices]
    assert sorted(reached) == sorted(DEVICES["vg-r3"]) and len(set(reached)) == len(reached)


def test_a_small_fleet_still_gets_a_real_one_device_canary_and_ineligible_revisions_nothing():
    stages = plan()
    small = [stage for stage in stages if stage.hardware_rev == "vg-r4"]
    assert [len(stage.devices) for stage in small] == [1, 1, 1, 0]
    assert not [stage for stage in stages if stage.hardware_rev == "vg-r5"]


def test_the_order_is_stable_so_a_canary_stays_the_canary():
    assert plan()[0].devices == plan()[0].devices
    assert plan(salt="other")[0].devices != plan()[0].devices
