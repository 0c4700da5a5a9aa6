import json
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bundle_fixtures import (
    LINEAGE,
    TAMPER_CASE_NAMES,
    THRESHOLDS,
    cli,
    make_bundle,
    seeded_key,
    tamper_cases,
    write_public_key,
)

from edge_packaging.bundle import verify_bundle
from edge_packaging.manifest import decide_labels
from edge_packaging.profiles import admit_model, load_profile
from edge_packaging.runtime import device_session
from edge_packaging.telemetry_contract import (
    HARSH_EVENT_CLASSES,
    IMU_CHANNELS,
    SAMPLES_PER_WINDOW,
    imu_column,
    imu_windows,
)

KEY = seeded_key(1)
OTHER_KEY = seeded_key(2)
R3_FIGURES = {"vg-r3-gateway": {"latency_p99_ms": 0.05, "model_bytes": 694, "latency_budget_ms": 2.0}}
"""A recorded vg-r3-gateway pass, so `verify --profile vg-r3-gateway` passes but for the key."""
RELEASE_ALIAS = "fleetml-edge-release"
"""The alias every default device profile trusts (`trusted_key`)."""


def assert_one_line_failure(result: subprocess.CompletedProcess, status: int, reason: str) -> None:
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
    assert reason in result.stderr, result.stderr


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def public_key(workdir):
    return write_public_key(workdir / "trusted.pub.pem", KEY)


@pytest.fixture(scope="module")
def release_key(public_key):
    """The trusted key given for the alias the default profiles trust, as `--public-key ALIAS=PEM`."""
    return f"{RELEASE_ALIAS}={public_key}"


@pytest.fixture(scope="module")
def other_public_key(workdir):
    return write_public_key(workdir / "other.pub.pem", OTHER_KEY)


@pytest.fixture(scope="module")
def good_bundle(workdir):
    return make_bundle(workdir / "bundles", KEY, device_profiles=R3_FIGURES)


@pytest.fixture(scope="module")
def cases(good_bundle, workdir):
    return tamper_cases(good_bundle, KEY, OTHER_KEY, workdir)


def test_verify_accepts_a_valid_bundle(good_bundle, public_key):
    result = cli("verify", good_bundle, "--public-key", public_key)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("OK harsh_event_model 1.2.0: signed by ")


def test_verify_with_a_profile(good_bundle, release_key):
    passed = cli("verify", good_bundle, "--public-key", release_key, "--profile", "vg-r3-gateway")
    assert passed.returncode == 0, passed.stderr
    assert "profile vg-r3-gateway passed (trusts key alias fleetml-edge-release)" in passed.stdout
    not_recorded = cli("verify", good_bundle, "--public-key", release_key, "--profile", "vg-r4-gateway")
    assert_one_line_failure(
        not_recorded,
        1,
        "REJECTED: profile vg-r4-gateway: profile: the manifest does not record a pass of vg-r4-gateway",
    )
    unknown = cli("verify", good_bundle, "--public-key", release_key, "--profile", "vg-r9")
    assert_one_line_failure(unknown, 2, "unknown device profile 'vg-r9'")


def test_verify_with_a_profile_trusts_only_the_key_of_its_alias(
    workdir, public_key, release_key, other_public_key
):
    """A bundle signed by a key the profile does not trust fails `--profile`, whatever other keys are
    at hand: before, any `--public-key` given passed as the profile's."""
    other_bundle = make_bundle(workdir / "other-signer", OTHER_KEY, device_profiles=R3_FIGURES)
    profile = ("--profile", "vg-r3-gateway")
    unnamed = cli("verify", other_bundle, "--public-key", other_public_key, *profile)
    assert_one_line_failure(unnamed, 2, "pass its key as --public-key fleetml-edge-release=PEM")
    both = cli(
        "verify", other_bundle, "--public-key", release_key, "--public-key", other_public_key, *profile
    )
    assert_one_line_failure(both, 1, "REJECTED: signed by untrusted key")
    other_alias = cli("verify", other_bundle, "--public-key", f"staging={other_public_key}", *profile)
    assert_one_line_failure(other_alias, 2, "profile vg-r3-gateway trusts key alias fleetml-edge-release")
    via_env = cli("verify", other_bundle, *profile, env_extra={"FLEETML_PUBLIC_KEY": release_key})
    assert_one_line_failure(via_env, 1, "REJECTED: signed by untrusted key")
    # Without a profile every key given is trusted, named or not.
    assert cli("verify", other_bundle, "--public-key", f"staging={other_public_key}").returncode == 0


@pytest.mark.parametrize("name", TAMPER_CASE_NAMES)
def test_verify_rejects_each_tampered_bundle(cases, name, release_key, workdir):
    case = cases[name]
    args = ["verify", case.path, "--public-key", release_key]
    if case.max_archive_bytes:
        # The CLI takes size limits from a device profile: a made-up device with a tiny store.
        profile = load_profile("vg-r3-gateway").to_json()
        limit = case.max_archive_bytes
        profile.update(name="tiny-device", max_bundle_bytes=limit, max_model_bytes=limit // 2)
        profile_path = workdir / "tiny-device.json"
        profile_path.write_text(json.dumps(profile))
        args += ["--profile", profile_path]
    result = cli(*args)
    assert_one_line_failure(result, 1, case.reason)
    assert result.stderr.startswith("REJECTED: ")


def test_verify_usage_errors(good_bundle, workdir, public_key, other_public_key):
    assert_one_line_failure(cli("verify", good_bundle), 2, "no trusted public key")
    assert_one_line_failure(cli("verify", good_bundle, "--public-key", workdir / "nope.pem"), 2, "nope.pem")
    via_env = cli("verify", good_bundle, env_extra={"FLEETML_PUBLIC_KEY": str(public_key)})
    assert via_env.returncode == 0, via_env.stderr
    untrusted = cli("verify", good_bundle, "--public-key", other_public_key)
    assert_one_line_failure(untrusted, 1, "REJECTED: signed by untrusted key")
    missing_alias_key = cli("verify", good_bundle, "--public-key", f"{RELEASE_ALIAS}={workdir / 'nope.pem'}")
    assert_one_line_failure(missing_alias_key, 2, "nope.pem")


def test_inspect_prints_the_manifest_summary(good_bundle, public_key, other_public_key):
    result = cli("inspect", good_bundle)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    verified = verify_bundle(good_bundle, [KEY.public_key()])
    for expected in (
        "model      harsh_event_model 1.2.0",
        f"file       model.onnx  {len(verified.model_bytes)} bytes  sha256 {verified.manifest.model_sha256}",
        "input      imu float32 [N,6,200]: ax (m/s^2)",
        "at 50 Hz",
        "output     probabilities float32 [N,5]",
        "class      collision  threshold 0.3",
        "class      benign  threshold 0  (fallback)",
        "profile    vg-r3-gateway",
        f"signed by  {verified.signing_key_id}",
        f'"dagster_run_id": "{LINEAGE["dagster_run_id"]}"',
        "signature  not checked",
    ):
        assert expected in out, expected

    checked = cli("inspect", good_bundle, "--public-key", public_key)
    assert checked.returncode == 0
    assert f"signature  valid, by trusted key {verified.signing_key_id}" in checked.stdout
    assert "not checked" not in checked.stdout
    wrong = cli("inspect", good_bundle, "--public-key", other_public_key)
    assert_one_line_failure(wrong, 1, "REJECTED: signed by untrusted key")
    assert wrong.stdout == "", "nothing of an unverified manifest is printed once a key is given"


def test_inspect_json_with_a_key_prints_only_a_verified_manifest(good_bundle, public_key, other_public_key):
    """`inspect --json --public-key` used to print the manifest and exit 0 whatever key signed it."""
    verified = verify_bundle(good_bundle, [KEY.public_key()])
    checked = cli("inspect", good_bundle, "--json", "--public-key", public_key)
    assert checked.returncode == 0 and checked.stderr == ""
    assert json.loads(checked.stdout) == verified.manifest.to_json()
    untrusted = cli("inspect", good_bundle, "--json", "--public-key", other_public_key)
    assert_one_line_failure(untrusted, 1, "REJECTED: signed by untrusted key")
    assert untrusted.stdout == ""
    via_env = cli("inspect", good_bundle, "--json", env_extra={"FLEETML_PUBLIC_KEY": str(other_public_key)})
    assert_one_line_failure(via_env, 1, "REJECTED: signed by untrusted key")

    unchecked = cli("inspect", good_bundle, "--json")
    assert unchecked.returncode == 0
    assert json.loads(unchecked.stdout) == verified.manifest.to_json()
    assert unchecked.stderr == "signature not checked (pass --public-key to verify)\n"


def test_inspect_refuses_a_structurally_unsafe_bundle(cases):
    result = cli("inspect", cases["symlink"].path)
    assert_one_line_failure(result, 1, "REJECTED: member 'model.onnx' is a symlink")


def telemetry_table(rows: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    windows = rng.normal(0, 2, (rows, len(IMU_CHANNELS), SAMPLES_PER_WINDOW)).astype(np.float32)
    windows[:, 2] += 9.81
    windows[rows // 2 :, 0] -= rng.uniform(2, 8, (rows - rows // 2, 1)).astype(np.float32)
    return pa.table(
        {
            "event_id": [f"evt-{i:04d}" for i in range(rows)],
            "device_id": ["dev-1"] * rows,
            "speed_kph": pa.array(rng.uniform(0, 120, rows).astype(np.float32)),
            "imu": imu_column(windows),
        }
    )


def test_run_scores_telemetry_rows_end_to_end(good_bundle, public_key, workdir):
    table = telemetry_table(24)
    source = workdir / "telemetry.parquet"
    pq.write_table(table, source)
    target = workdir / "out" / "scores.parquet"
    result = cli("run", good_bundle, "--public-key", public_key, "--input", source, "--output", target)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("scored 24 row(s) with harsh_event_model 1.2.0")

    scores = pq.read_table(target)
    probability_columns = [f"probability_{name}" for name in HARSH_EVENT_CLASSES]
    assert scores.column_names == ["event_id", *probability_columns, "predicted_label", "inference_ms"]
    assert scores.column("event_id").to_pylist() == table.column("event_id").to_pylist()
    probabilities = np.column_stack([scores.column(c).to_numpy() for c in probability_columns])

    verified = verify_bundle(good_bundle, [KEY.public_key()])
    session = device_session(admit_model(verified.model_bytes, [load_profile("vg-r3-gateway")]))
    feeds = {"imu": imu_windows(table.column("imu")), "speed_kph": table.column("speed_kph").to_numpy()}
    (expected,) = session.run(["probabilities"], feeds)
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)
    labels = [HARSH_EVENT_CLASSES[i] for i in decide_labels(expected, verified.manifest)]
    assert scores.column("predicted_label").to_pylist() == labels
    assert (scores.column("inference_ms").to_numpy() > 0).all()
    metadata = scores.schema.metadata
    assert metadata[b"fleetml.bundle_sha256"].decode() == verified.bundle_sha256
    assert metadata[b"fleetml.model_version"] == b"1.2.0"
    assert set(THRESHOLDS) == set(HARSH_EVENT_CLASSES)


def test_run_refuses_bad_input_and_tampered_bundles(good_bundle, cases, public_key, workdir):
    missing = workdir / "missing.parquet"
    pq.write_table(telemetry_table(3).drop_columns(["speed_kph"]), missing)
    target = workdir / "never.parquet"
    assert_one_line_failure(
        cli("run", good_bundle, "--public-key", public_key, "--input", missing, "--output", target),
        3,
        "input: missing column(s) speed_kph",
    )
    short = workdir / "short.parquet"
    table = telemetry_table(2)
    short_imu = pa.array([[0.0] * 600] * 2, type=pa.list_(pa.float32()))
    pq.write_table(table.set_column(table.column_names.index("imu"), "imu", short_imu), short)
    assert_one_line_failure(
        cli("run", good_bundle, "--public-key", public_key, "--input", short, "--output", target),
        3,
        "input: every imu row must hold 1200 values",
    )
    absent = workdir / "absent.parquet"
    assert_one_line_failure(
        cli("run", good_bundle, "--public-key", public_key, "--input", absent, "--output", target),
        3,
        "input: cannot read",
    )
    source = workdir / "ok.parquet"
    tampered = cases["changed_model_bytes"].path
    pq.write_table(telemetry_table(2), source)
    assert_one_line_failure(
        cli("run", tampered, "--public-key", public_key, "--input", source, "--output", target),
        1,
        "REJECTED: model.onnx sha256",
    )
    assert not target.exists()
