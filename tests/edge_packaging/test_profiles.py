import dataclasses
import json
import re

import pytest
from bundle_fixtures import make_bundle, seeded_key, tiny_model_bytes

from edge_packaging.bundle import BundleLimits, verify_bundle
from edge_packaging.profiles import (
    DEFAULT_PROFILES_DIR,
    ProfileError,
    admit_model,
    check_bundle_against_profile,
    check_model_against_profile,
    check_model_against_profiles,
    load_profile,
    load_profiles,
    measure_latency_ms,
    model_facts,
    parse_profile,
    profile_for_hardware_rev,
)

KEY = seeded_key(1)


@pytest.fixture(scope="module")
def profiles():
    return load_profiles()


@pytest.fixture(scope="module")
def r3(profiles):
    return profiles["vg-r3-gateway"]


def test_default_profiles_are_complete_and_distinct(profiles):
    assert set(profiles) == {"vg-r3-gateway", "vg-r4-gateway", "dashcam-dc2"}
    r3, r4, dc2 = profiles["vg-r3-gateway"], profiles["vg-r4-gateway"], profiles["dashcam-dc2"]
    assert r3.max_model_bytes < r4.max_model_bytes < dc2.max_model_bytes
    assert r3.latency_budget_ms < r4.latency_budget_ms < dc2.latency_budget_ms
    assert r3.max_onnx_opset["ai.onnx"] <= r4.max_onnx_opset["ai.onnx"] <= dc2.max_onnx_opset["ai.onnx"]
    assert r3.allowed_operators <= dc2.allowed_operators
    for profile in profiles.values():
        assert profile.max_model_bytes <= profile.max_bundle_bytes
        essentials = {"ai.onnx:ReduceMean", "ai.onnx:Softmax", "ai.onnx.ml:TreeEnsembleClassifier"}
        assert essentials <= profile.allowed_operators
        assert "ai.onnx:Loop" not in profile.allowed_operators, "unbounded loops break latency budgets"
        assert profile.trusted_key
        assert parse_profile(profile.to_json()) == profile
        assert profile.bundle_limits() == BundleLimits(
            max_archive_bytes=profile.max_bundle_bytes, max_model_bytes=profile.max_model_bytes
        )


def test_every_simulated_hardware_revision_has_a_profile(profiles):
    from fleet_sim.fleet import HARDWARE_REVISIONS

    for revision in HARDWARE_REVISIONS:
        assert profile_for_hardware_rev(revision, profiles) is not None, revision
    assert profile_for_hardware_rev("vg-r3", profiles).name == "vg-r3-gateway"
    assert profile_for_hardware_rev("unknown-rev", profiles) is None


def test_tiny_model_passes_every_profile(profiles):
    for profile in profiles.values():
        check = check_model_against_profile(tiny_model_bytes(), profile, latency_ms=0.1)
        assert check.passed, check.failures
        assert check.failures == ()
        assert check.figures["model_bytes"] == len(tiny_model_bytes())
        assert check.figures["opsets"] == {"ai.onnx": 17}
        assert check.figures["latency_p99_ms"] == 0.1
        json.dumps(check.figures)  # recorded in the manifest as JSON


def test_model_too_big(r3):
    small = dataclasses.replace(r3, max_model_bytes=100)
    check = check_model_against_profile(tiny_model_bytes(), small, latency_ms=0.1)
    size = len(tiny_model_bytes())
    assert not check.passed
    assert check.failures == (f"model size: {size} bytes exceeds max_model_bytes 100 by {size - 100} bytes",)


def test_opset_too_high(profiles):
    model = tiny_model_bytes(opset=21)
    check = check_model_against_profile(model, profiles["vg-r3-gateway"], latency_ms=0.1)
    assert check.failures == ("opset: ai.onnx opset 21 exceeds max_onnx_opset 17 by 4",)
    assert check_model_against_profile(model, profiles["dashcam-dc2"], latency_ms=0.1).passed


def test_ml_opset_and_unknown_domains(r3):
    model = tiny_model_bytes(extra_opsets={"ai.onnx.ml": 5, "com.microsoft": 1})
    check = check_model_against_profile(model, r3, latency_ms=0.1)
    assert check.failures == (
        "opset: ai.onnx.ml opset 5 exceeds max_onnx_opset 3 by 2",
        "opset: domain com.microsoft (opset 1) is not supported by the device runtime",
    )


def test_operator_not_allowed(profiles):
    model = tiny_model_bytes(final_op="Hardmax")
    for profile in profiles.values():
        check = check_model_against_profile(model, profile, latency_ms=0.1)
        assert check.failures == ("operators: 1 not in allowed_operators: ai.onnx:Hardmax",)


def _model_with_subgraph_and_function() -> bytes:
    """Hardmax hidden in an If branch, and Hardmax plus Elu hidden in a local function."""
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info
    then_out = value("y_then", TensorProto.FLOAT, [1, 5])
    else_out = value("y_else", TensorProto.FLOAT, [1, 5])
    then_branch = helper.make_graph([helper.make_node("Hardmax", ["x"], ["y_then"])], "then", [], [then_out])
    else_branch = helper.make_graph([helper.make_node("Identity", ["x"], ["y_else"])], "else", [], [else_out])
    squash = helper.make_function(
        "fleetml.local",
        "Squash",
        ["a"],
        ["b"],
        [helper.make_node("Elu", ["a"], ["e"]), helper.make_node("Hardmax", ["e"], ["b"])],
        [helper.make_opsetid("", 17)],
    )
    graph = helper.make_graph(
        [
            helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch),
            helper.make_node("Squash", ["y"], ["z"], domain="fleetml.local"),
        ],
        "nested",
        [value("x", TensorProto.FLOAT, [1, 5]), value("cond", TensorProto.BOOL, [])],
        [value("z", TensorProto.FLOAT, [1, 5])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("fleetml.local", 1)],
        functions=[squash],
    )
    return model.SerializeToString()


def test_operators_inside_subgraphs_and_functions_are_checked(profiles):
    model = _model_with_subgraph_and_function()
    facts = model_facts(model)
    assert facts.operators == {"ai.onnx:If", "ai.onnx:Hardmax", "ai.onnx:Identity", "ai.onnx:Elu"}
    assert facts.opsets == {"ai.onnx": 17}, "a local function's domain is not a runtime opset"
    check = check_model_against_profile(model, profiles["dashcam-dc2"], latency_ms=0.1)
    assert check.failures == (
        "operators: 3 not in allowed_operators: ai.onnx:Elu, ai.onnx:Hardmax, ai.onnx:If",
    )


def test_latency_over_budget_or_unmeasured(r3):
    over = check_model_against_profile(tiny_model_bytes(), r3, latency_ms=2.5)
    assert over.failures == ("latency: p99 2.500 ms exceeds latency_budget_ms 2 by 0.500 ms",)
    at_budget = check_model_against_profile(tiny_model_bytes(), r3, latency_ms=2.0)
    assert at_budget.passed
    unmeasured = check_model_against_profile(tiny_model_bytes(), r3, latency_ms=None)
    assert not unmeasured.passed and unmeasured.failures[0].startswith("latency: not measured")
    not_a_number = check_model_against_profile(tiny_model_bytes(), r3, latency_ms=float("nan"))
    assert not_a_number.failures[0].startswith("latency:")


def test_several_failures_are_all_reported(r3):
    model = tiny_model_bytes(opset=21, final_op="Hardmax")
    check = check_model_against_profile(model, dataclasses.replace(r3, max_model_bytes=10), latency_ms=9.0)
    limits_failed = [failure.split(":")[0] for failure in check.failures]
    assert limits_failed == ["model size", "opset", "operators", "latency"]


def test_not_an_onnx_model(r3):
    check = check_model_against_profile(b"\x08\x01garbage\xff", r3, latency_ms=0.1)
    assert not check.passed and check.failures[0].startswith("model: not a readable ONNX model")


def test_measured_latency_feeds_the_check(profiles):
    latency = measure_latency_ms(admit_model(tiny_model_bytes(), profiles.values()), runs=50, warmup=5)
    assert 0 < latency.p50_ms <= latency.p99_ms and latency.runs == 50 and latency.threads == 1
    assert 0 < latency.wall_p50_ms <= latency.wall_p99_ms
    checks = check_model_against_profiles(tiny_model_bytes(), profiles.values(), latency=latency)
    assert all(check.passed for check in checks.values())
    assert checks["vg-r3-gateway"].figures["latency_p99_ms"] == round(latency.p99_ms, 4)


def test_bundle_check_uses_the_recorded_figures(tmp_path, profiles):
    latency = measure_latency_ms(admit_model(tiny_model_bytes(), profiles.values()), runs=20)
    checks = check_model_against_profiles(tiny_model_bytes(), profiles.values(), latency=latency)
    recorded = {name: check.figures for name, check in checks.items() if check.passed}
    path = make_bundle(tmp_path / "ok", KEY, device_profiles=recorded)
    verified = verify_bundle(path, [KEY.public_key()])
    for profile in profiles.values():
        assert check_bundle_against_profile(verified, profile).passed

    unrecorded = verify_bundle(make_bundle(tmp_path / "none", KEY, device_profiles={}), [KEY.public_key()])
    check = check_bundle_against_profile(unrecorded, profiles["vg-r4-gateway"])
    assert check.failures == ("profile: the manifest does not record a pass of vg-r4-gateway at build time",)

    tiny_device = dataclasses.replace(profiles["vg-r3-gateway"], max_bundle_bytes=5000)
    check = check_bundle_against_profile(verified, tiny_device)
    size = verified.archive_bytes
    assert check.failures[0] == (
        f"bundle size: {size} bytes exceeds max_bundle_bytes 5000 by {size - 5000} bytes"
    )


def test_profile_files_are_parsed_strictly(tmp_path, r3):
    good = r3.to_json()
    big = good["max_bundle_bytes"] + 1
    bad_cases = {
        "missing": ({k: v for k, v in good.items() if k != "trusted_key"}, "missing field(s) trusted_key"),
        "unknown": ({**good, "gpu": True}, "unknown field(s) gpu"),
        "bool size": ({**good, "max_model_bytes": True}, "max_model_bytes must be a positive integer"),
        "model over bundle": ({**good, "max_model_bytes": big}, "exceeds max_bundle"),
        "op domain": ({**good, "allowed_operators": {"com.acme": ["Foo"]}}, "absent from max_onnx_opset"),
        "budget": ({**good, "latency_budget_ms": -1}, "latency_budget_ms must be a positive number"),
        "two defaults": ({**good, "max_onnx_opset": {"": 17, "ai.onnx": 17}}, "default domain twice"),
    }
    for label, (obj, reason) in bad_cases.items():
        with pytest.raises(ProfileError, match=re.escape(reason)):
            parse_profile(obj, label)
    empty_domain = parse_profile({**good, "max_onnx_opset": {"": 17, "ai.onnx.ml": 3}})
    assert empty_domain.max_onnx_opset == {"ai.onnx": 17, "ai.onnx.ml": 3}


def test_loading_by_name_path_and_directory(tmp_path, r3):
    assert load_profile("vg-r3-gateway") == r3
    assert load_profile(str(DEFAULT_PROFILES_DIR / "vg-r3-gateway.json")) == r3
    with pytest.raises(ProfileError, match="unknown device profile 'vg-r9'.*known: dashcam-dc2"):
        load_profile("vg-r9")
    custom = tmp_path / "tiny.json"
    tiny = {**r3.to_json(), "name": "tiny", "max_bundle_bytes": 1000, "max_model_bytes": 500}
    custom.write_text(json.dumps(tiny))
    assert load_profile(str(custom)).max_bundle_bytes == 1000

    clash = tmp_path / "clash"
    clash.mkdir()
    (clash / "a.json").write_text(json.dumps(r3.to_json()))
    (clash / "b.json").write_text(json.dumps({**r3.to_json(), "name": "other"}))
    with pytest.raises(ProfileError, match="hardware rev vg-r3 is already covered by vg-r3-gateway"):
        load_profiles(clash)
    with pytest.raises(ProfileError, match="no device profiles"):
        load_profiles(tmp_path / "empty-does-not-exist")
    (clash / "b.json").write_text("{not json")
    with pytest.raises(ProfileError, match="cannot read profile"):
        load_profiles(clash)
