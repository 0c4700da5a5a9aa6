"""No path loads a model into onnxruntime before a device profile admits it.

A signed bundle whose model uses an operator outside the profile's allow-list is refused by
`python -m edge_packaging run`, by the simulated fleet and by the build host's latency measurement,
each before any `onnxruntime.InferenceSession` exists; operators hidden behind a function overload,
and functions declared in the standard domain, are refused by the same check.
"""

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bundle_fixtures import make_bundle, seeded_key, tiny_model_bytes, write_public_key

from edge_packaging import cli
from edge_packaging.profiles import (
    AdmittedModel,
    ModelRefused,
    admit_model,
    check_model_against_profile,
    load_profiles,
    model_facts,
)
from edge_packaging.runtime import EdgeModelSession
from edge_packaging.telemetry_contract import IMU_CHANNELS, SAMPLES_PER_WINDOW, imu_column

KEY = seeded_key(1)
RELEASE_ALIAS = "fleetml-edge-release"
HARDMAX_REFUSAL = "operators: 1 not in allowed_operators: ai.onnx:Hardmax"
"""Hardmax runs in onnxruntime, but no device profile allows it."""


@pytest.fixture
def sessions(monkeypatch) -> list:
    """Every onnxruntime session constructed during the test (the real one is still made)."""
    import onnxruntime

    real = onnxruntime.InferenceSession
    made = []

    def recording(*args, **kwargs):
        made.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", recording)
    return made


@pytest.fixture
def profiles():
    return load_profiles()


@pytest.fixture
def public_key(tmp_path) -> Path:
    return write_public_key(tmp_path / "trusted.pub.pem", KEY)


@pytest.fixture
def hardmax_bundle(tmp_path) -> Path:
    """Signed by the trusted key and recording a vg-r3-gateway pass, yet its model uses Hardmax."""
    return make_bundle(tmp_path / "hardmax", KEY, tiny_model_bytes(final_op="Hardmax"))


def telemetry_file(path: Path, rows: int = 3) -> Path:
    rng = np.random.default_rng(0)
    windows = rng.normal(0, 2, (rows, len(IMU_CHANNELS), SAMPLES_PER_WINDOW)).astype(np.float32)
    table = pa.table(
        {
            "event_id": [f"evt-{i}" for i in range(rows)],
            "speed_kph": pa.array(rng.uniform(0, 120, rows).astype(np.float32)),
            "imu": imu_column(windows),
        }
    )
    pq.write_table(table, path)
    return path


def run_cli(capsys, bundle: Path, public_key: str, tmp_path: Path, *extra: str) -> tuple[int, str, Path]:
    output = tmp_path / "scores.parquet"
    source = telemetry_file(tmp_path / "telemetry.parquet")
    argv = ["run", str(bundle), "--public-key", public_key, "--input", str(source), "--output", str(output)]
    status = cli.main([*argv, *extra])
    return status, capsys.readouterr().err, output


def test_cli_run_refuses_an_operator_outside_the_allow_list_before_any_session(
    capsys, sessions, hardmax_bundle, public_key, tmp_path
):
    status, stderr, output = run_cli(capsys, hardmax_bundle, str(public_key), tmp_path)
    assert status == cli.EXIT_REJECTED, stderr
    assert stderr == f"REJECTED: model.onnx refused by device profile vg-r3-gateway: {HARDMAX_REFUSAL}\n"
    assert sessions == [] and not output.exists()

    status, stderr, _ = run_cli(
        capsys, hardmax_bundle, f"{RELEASE_ALIAS}={public_key}", tmp_path, "--profile", "dashcam-dc2"
    )
    assert status == cli.EXIT_REJECTED
    assert stderr == f"REJECTED: model.onnx refused by device profile dashcam-dc2: {HARDMAX_REFUSAL}\n"
    assert sessions == []


def test_cli_run_refuses_a_bundle_that_names_no_profile_and_admits_a_good_one(
    capsys, sessions, public_key, tmp_path
):
    unnamed = make_bundle(tmp_path / "unnamed", KEY, device_profiles={})
    status, stderr, _ = run_cli(capsys, unnamed, str(public_key), tmp_path)
    assert status == cli.EXIT_REJECTED
    assert "the manifest names no device profile; pass --profile" in stderr
    assert sessions == []

    status, stderr, output = run_cli(capsys, make_bundle(tmp_path / "good", KEY), str(public_key), tmp_path)
    assert status == cli.EXIT_OK, stderr
    assert len(sessions) == 1 and output.exists()


def test_the_simulated_fleet_refuses_it_before_any_session(sessions, hardmax_bundle, public_key, tmp_path):
    from fleet_sim.deploy import DeviceRefusal, deploy_bundle, evaluate_bundle_on_fleet

    landing = tmp_path / "landing"
    with pytest.raises(DeviceRefusal, match="refused by device profile vg-r3-gateway: operators: .*Hardmax"):
        deploy_bundle(hardmax_bundle, public_key, landing, dt.date(2026, 11, 8), days=1, devices=4)
    with pytest.raises(DeviceRefusal, match=HARDMAX_REFUSAL):
        evaluate_bundle_on_fleet(hardmax_bundle, public_key, "2026-11-09", "new_hardware_rev", 7, 4)
    assert sessions == [] and not landing.exists()


def _model_with_functions(functions, main_node, opset: int = 17, domains=("fleetml.local",)) -> bytes:
    """A one-node model `x -> y` whose node `main_node` may call the model-local `functions`."""
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        [main_node], "calls", [value("x", TensorProto.FLOAT, [1, 5])], [value("y", TensorProto.FLOAT, [1, 5])]
    )
    imports = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, 1) for d in domains)]
    model = helper.make_model(graph, opset_imports=imports, functions=functions, ir_version=10)
    return model.SerializeToString()


def test_an_operator_hidden_in_a_function_overload_is_found_and_refused(profiles):
    from onnx import helper

    def squash(overload: str, op_type: str):
        body = [helper.make_node(op_type, ["a"], ["b"], axis=1)]
        opsets = [helper.make_opsetid("", 17)]
        return helper.make_function("fleetml.local", "Squash", ["a"], ["b"], body, opsets, overload=overload)

    call = helper.make_node("Squash", ["x"], ["y"], domain="fleetml.local")
    call.overload = "hard"
    # The called overload is declared first; a (domain, name) key would keep only the last, benign one.
    model = _model_with_functions([squash("hard", "Hardmax"), squash("soft", "Softmax")], call)

    assert model_facts(model).operators == {"ai.onnx:Hardmax"}
    r3 = profiles["vg-r3-gateway"]
    assert check_model_against_profile(model, r3, latency_ms=0.1).failures == (HARDMAX_REFUSAL,)
    with pytest.raises(ModelRefused) as refused:
        admit_model(model, [r3])
    assert refused.value.failures == {"vg-r3-gateway": (HARDMAX_REFUSAL,)}


@pytest.mark.parametrize("domain", ["", "ai.onnx"])
def test_a_local_function_in_the_default_domain_is_refused(profiles, domain):
    """It would shadow a standard operator (here Softmax) and erase the ai.onnx opset (here 99)."""
    from onnx import helper

    shadow = helper.make_function(
        domain,
        "Softmax",
        ["a"],
        ["b"],
        [helper.make_node("Identity", ["a"], ["b"])],
        [helper.make_opsetid("", 99)],
    )
    model = _model_with_functions([shadow], helper.make_node("Softmax", ["x"], ["y"], domain=domain), 99, ())

    facts = model_facts(model)
    assert facts.opsets == {"ai.onnx": 99} and facts.standard_domain_functions == ("ai.onnx:Softmax",)
    for profile in profiles.values():
        failures = check_model_against_profile(model, profile, latency_ms=0.1).failures
        limit = profile.max_onnx_opset["ai.onnx"]
        assert failures == (
            f"opset: ai.onnx opset 99 exceeds max_onnx_opset {limit} by {99 - limit}",
            "functions: 1 model-local function(s) in a standard domain: ai.onnx:Softmax",
        )
        with pytest.raises(ModelRefused):
            admit_model(model, [profile])


def test_the_bundle_assets_latency_is_measured_only_after_admission(sessions, profiles):
    from assets.edge import steady_latency

    targets = [profiles["vg-r3-gateway"], profiles["vg-r4-gateway"]]
    with pytest.raises(ModelRefused, match="Hardmax"):
        steady_latency(tiny_model_bytes(final_op="Hardmax"), targets)
    assert sessions == []

    # A target that refuses the model (too small) fails its profile check; the one that admits it is
    # the one the build host measures under.
    tiny_r3 = dataclasses.replace(profiles["vg-r3-gateway"], max_model_bytes=10)
    latency = steady_latency(tiny_model_bytes(), [tiny_r3, profiles["vg-r4-gateway"]], rounds=1)
    assert latency.p99_ms > 0 and len(sessions) == 1


def test_sessions_load_only_admitted_models(sessions, profiles):
    with pytest.raises(TypeError, match="admit_model"):
        EdgeModelSession(tiny_model_bytes())
    with pytest.raises(TypeError, match="made only by admit_model"):
        AdmittedModel(tiny_model_bytes(), (profiles["vg-r3-gateway"],), object())
    assert sessions == []
    admitted = admit_model(tiny_model_bytes(), [profiles["vg-r3-gateway"]])
    assert EdgeModelSession(admitted).predict_proba(np.zeros((2, 6, 200), np.float32), np.zeros(2)).shape == (
        2,
        5,
    )
    assert len(sessions) == 1 and admitted.profiles == (profiles["vg-r3-gateway"],)
