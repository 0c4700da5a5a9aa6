import dataclasses
import json
from datetime import UTC, datetime

import numpy as np
import pytest
from bundle_fixtures import LINEAGE, THRESHOLDS
from fuzzing import fuzz_settings
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edge_packaging.decision import decide_classes
from edge_packaging.manifest import (
    HARSH_EVENT_INPUTS,
    HARSH_EVENT_OUTPUT,
    FileEntry,
    Manifest,
    ManifestError,
    OutputSpec,
    TensorSpec,
    decide_labels,
    parse_manifest,
    serialize_manifest,
)

SHA = "ab" * 32


def valid_manifest(**overrides) -> Manifest:
    fields = dict(
        model_name="harsh_event_model",
        model_version="1.2.0",
        created_at="2025-03-01T12:00:00Z",
        files={"model.onnx": FileEntry(sha256=SHA, size_bytes=721)},
        inputs=HARSH_EVENT_INPUTS,
        output=HARSH_EVENT_OUTPUT,
        decision_thresholds=THRESHOLDS,
        signing_key_id="0123456789abcdef",
        device_profiles={"vg-r3-gateway": {"latency_p99_ms": 0.21, "model_bytes": 721}},
        lineage=LINEAGE,
    )
    fields.update(overrides)
    return Manifest(**fields)


def encode(obj) -> bytes:
    """Canonical JSON, so a test about one field is not rejected for non-canonical bytes instead."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def mutated(**changes) -> bytes:
    obj = valid_manifest().to_json()
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        target = obj
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is DELETE:
            del target[leaf]
        else:
            target[leaf] = value
    return encode(obj)


DELETE = object()

# --- strategies -------------------------------------------------------------------------------

# Built from alphabets rather than st.from_regex, which is several times slower to draw from.
names = st.builds(str.__add__, st.sampled_from("abcz09"), st.text(alphabet="abcdz0189_.-", max_size=15))
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=3)
semvers = st.builds(
    lambda a, b, c, pre, build: f"{a}.{b}.{c}" + (f"-{pre}" if pre else "") + (f"+{build}" if build else ""),
    st.integers(0, 999),
    st.integers(0, 999),
    st.integers(0, 999),
    st.sampled_from(["", "rc.1", "alpha", "beta.2"]),
    st.sampled_from(["", "sha.abc123", "20250301"]),
)
timestamps = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
).map(lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
path_components = st.builds(str.__add__, st.sampled_from("aZ9_"), st.text(alphabet="aZ09_.-", max_size=10))
paths = st.lists(path_components, min_size=1, max_size=3).map("/".join)
file_entries = st.builds(
    FileEntry, sha256=st.binary(min_size=32, max_size=32).map(bytes.hex), size_bytes=st.integers(0, 2**40)
)
tensor_specs = st.builds(
    lambda name, dtype, channels, rate: TensorSpec(
        name=name,
        dtype=dtype,
        shape=("N", len(channels) or 1, 200),
        channel_names=tuple(channels),
        units=tuple(f"u{i}" for i in range(len(channels) or 1)),
        sample_rate_hz=rate,
    ),
    st.builds(str.__add__, st.sampled_from("ab_"), st.text(alphabet="ab09_", max_size=10)),
    st.sampled_from(["float32", "float16", "int64"]),
    st.lists(st.text(alphabet="xyzw", min_size=1, max_size=4), max_size=6, unique=True),
    st.none() | st.integers(1, 2000),
)


@st.composite
def manifests(draw) -> Manifest:
    classes = draw(st.lists(names, min_size=1, max_size=6, unique=True))
    inputs = draw(st.lists(tensor_specs, min_size=1, max_size=3, unique_by=lambda spec: spec.name))
    fallback = draw(st.sampled_from(classes))
    thresholds = {c: 0.0 if c == fallback else draw(st.floats(0.0, 1.0, exclude_min=True)) for c in classes}
    return Manifest(
        model_name=draw(names),
        model_version=draw(semvers),
        created_at=draw(timestamps),
        files=draw(st.dictionaries(paths, file_entries, min_size=1, max_size=3)),
        inputs=tuple(inputs),
        output=OutputSpec(
            name="probabilities", dtype="float32", shape=("N", len(classes)), class_names=tuple(classes)
        ),
        decision_thresholds=thresholds,
        signing_key_id=draw(st.binary(min_size=8, max_size=8).map(bytes.hex)),
        device_profiles=draw(st.dictionaries(names, json_objects, max_size=3)),
        lineage=draw(st.dictionaries(st.text(max_size=10), json_values, max_size=5)),
    )


# --- properties -------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifests())
def test_canonical_round_trip(manifest):
    data = serialize_manifest(manifest)
    parsed = parse_manifest(data)
    assert parsed == manifest
    assert serialize_manifest(parsed) == data
    assert json.loads(data) == manifest.to_json()


@pytest.mark.fuzz
@fuzz_settings(200)
@given(manifests(), st.data())
def test_any_byte_mutation_is_refused_or_changes_the_manifest(manifest, data):
    original = serialize_manifest(manifest)
    position = data.draw(st.integers(0, len(original) - 1), label="position")
    byte = data.draw(st.integers(0, 255), label="byte")
    kind = data.draw(st.sampled_from(["replace", "delete", "insert"]), label="kind")
    if kind == "replace":
        changed = original[:position] + bytes([byte]) + original[position + 1 :]
    elif kind == "delete":
        changed = original[:position] + original[position + 1 :]
    else:
        changed = original[:position] + bytes([byte]) + original[position:]
    assume(changed != original)
    try:
        parsed = parse_manifest(changed)
    except ManifestError as error:
        assert str(error).isprintable(), "one printable line, whatever the bytes"
        return
    assert parsed != manifest


@pytest.mark.fuzz
@fuzz_settings(200)
@given(st.binary(max_size=300) | json_values.map(encode))
def test_arbitrary_input_never_crashes_the_parser(data):
    try:
        parse_manifest(data)
    except ManifestError as error:
        assert str(error) and str(error).isprintable()


# --- one reason per malformation --------------------------------------------------------------


def test_valid_manifest_round_trips_and_is_sorted_compact_utf8():
    manifest = valid_manifest(lineage={**LINEAGE, "note": "Zürich depot"})
    data = serialize_manifest(manifest)
    assert b" " not in data.replace(b"Z\xc3\xbcrich depot", b"")
    assert "Zürich".encode() in data
    assert list(json.loads(data)) == sorted(json.loads(data))
    assert parse_manifest(data) == manifest
    assert manifest.model_sha256 == SHA
    assert manifest.class_names == HARSH_EVENT_OUTPUT.class_names


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (mutated(format_version=2), "format_version: unsupported 2"),
        (mutated(format_version="1"), "format_version: unsupported '1'"),
        (mutated(format_version=1.0), "format_version: unsupported 1.0"),
        (mutated(lineage=DELETE), "missing field(s) lineage"),
        (mutated(extra_field=1), "unknown field(s) 'extra_field'"),
        (mutated(model_version=3), "model_version: expected a string, got int"),
        (mutated(model_version="1.2"), "model_version: invalid value '1.2'"),
        (mutated(model_name="Harsh Event"), "model_name: invalid value"),
        (mutated(created_at="2025-03-01 12:00:00"), "created_at: invalid value"),
        (mutated(created_at="2025-02-30T12:00:00Z"), "created_at: not a valid UTC time"),
        (mutated(signing_key_id="XYZ"), "signing_key_id: invalid value"),
        (mutated(files={}), "files: empty"),
        (mutated(files={"../model.onnx": {"sha256": SHA, "size_bytes": 1}}), "files: path with '..'"),
        (mutated(files={"/model.onnx": {"sha256": SHA, "size_bytes": 1}}), "files: absolute path"),
        (mutated(files={"a//model.onnx": {"sha256": SHA, "size_bytes": 1}}), "files: unsafe path"),
        (mutated(files={"./model.onnx": {"sha256": SHA, "size_bytes": 1}}), "files: unsafe path"),
        (mutated(files={"model.onnx": {"sha256": SHA.upper(), "size_bytes": 1}}), "sha256: invalid value"),
        (mutated(files={"model.onnx": {"sha256": SHA[:-1], "size_bytes": 1}}), "sha256: invalid value"),
        (
            mutated(files={"model.onnx": {"sha256": SHA, "size_bytes": True}}),
            "size_bytes: expected an integer, got bool",
        ),
        (mutated(files={"model.onnx": {"sha256": SHA, "size_bytes": -1}}), "size_bytes: must be >= 0"),
        (mutated(files={"model.onnx": {"sha256": SHA}}), "files[model.onnx]: missing field(s) size_bytes"),
        (mutated(files=["model.onnx"]), "files: expected an object, got list"),
        (mutated(files={"a\nb\x1b": {"sha256": SHA}}), "files[a\\nb\\x1b]: missing field(s) size_bytes"),
        (mutated(files={"a\nb": {"sha256": SHA, "size_bytes": 1}}), "files: unsafe path 'a\\nb'"),
        (mutated(inputs=[]), "inputs: expected one or more"),
        (mutated(inputs__0__dtype="float128"), "dtype: unsupported 'float128'"),
        (mutated(inputs__0__units=["m/s^2"]), "units: expected 6 unit(s), got 1"),
        (mutated(inputs__0__shape=["N", 0, 200]), "shape[1]: must be >= 1"),
        (mutated(output__class_names=["a", "a"]), "class_names: duplicate names"),
        (mutated(output__shape=["N", 4]), "output shape: last dimension 4 != 5 class names"),
        (mutated(decision_thresholds={"benign": 0.5}), "exactly one threshold per output class"),
        (mutated(decision_thresholds__collision=1.5), "must be within [0, 1], got 1.5"),
        (mutated(decision_thresholds__benign=0.1), "one class (the fallback) must have threshold 0, got 0"),
        (mutated(decision_thresholds__collision=0.0), "(the fallback) must have threshold 0, got 2"),
        (mutated(decision_thresholds__collision="0.3"), "expected a number, got str"),
        (mutated(lineage=[1, 2]), "lineage: expected an object, got list"),
        (b"[]", "expected an object, got list"),
        (b'{"a":1,"a":2}', "duplicate key 'a'"),
        (b"\xff\xfe{}", "not UTF-8 at byte 0"),
        (b"{not json", "not JSON"),
        (b"[" * 100000 + b"]" * 100000, "not JSON"),
        (b"", "not JSON"),
    ],
)
def test_malformed_manifest_is_refused_with_its_reason(data, reason):
    with pytest.raises(ManifestError) as caught:
        parse_manifest(data)
    assert reason in str(caught.value)
    assert str(caught.value).isprintable()


def test_non_finite_numbers_and_non_canonical_bytes_are_refused():
    good = serialize_manifest(valid_manifest())
    with pytest.raises(ManifestError, match="non-finite number NaN"):
        parse_manifest(good.replace(b'"collision":0.3', b'"collision":NaN'))
    with pytest.raises(ManifestError, match="not in canonical form"):
        parse_manifest(json.dumps(json.loads(good), indent=2, sort_keys=True).encode())
    with pytest.raises(ManifestError, match="not in canonical form"):
        parse_manifest(encode(dict(reversed(list(json.loads(good).items())))).replace(b",", b", ", 1))
    # The same numbers written differently: equal in JSON, different bytes, so refused.
    with pytest.raises(ManifestError, match="not in canonical form"):
        parse_manifest(good.replace(b'"collision":0.3', b'"collision":0.30'))
    with pytest.raises(ManifestError, match="not in canonical form"):
        parse_manifest(good.replace(b'"benign":0.0', b'"benign":0'))


def test_constructing_an_invalid_manifest_fails_like_parsing_it():
    with pytest.raises(ManifestError, match="model_name"):
        valid_manifest(model_name="../evil")
    with pytest.raises(ManifestError, match="non-finite"):
        valid_manifest(lineage={"auc": float("nan")})
    with pytest.raises(ManifestError, match="not a JSON value"):
        valid_manifest(lineage={"when": datetime(2025, 1, 1)})
    with pytest.raises(ManifestError, match="lone surrogate"):
        valid_manifest(lineage={"text": "\ud800"})
    with pytest.raises(ManifestError, match="nested deeper"):
        nested: dict = {}
        for _ in range(40):
            nested = {"x": nested}
        valid_manifest(lineage=nested)
    with pytest.raises(ManifestError, match="files"):
        valid_manifest(files={"model.onnx": {"sha256": SHA, "size_bytes": 1}})


def test_manifest_is_immutable_and_equal_by_canonical_bytes():
    manifest = valid_manifest()
    with pytest.raises(dataclasses.FrozenInstanceError):
        manifest.model_version = "9.9.9"
    assert manifest == valid_manifest()
    assert hash(manifest) == hash(valid_manifest())
    assert valid_manifest(lineage={"n": 1}) != valid_manifest(lineage={"n": 1.0})


def test_decisions_follow_the_platform_rule():
    manifest = valid_manifest()  # thresholds: events 0.5, collision 0.3, benign 0.0 (the fallback)
    assert manifest.fallback_class == "benign"
    probabilities = np.array(
        [
            [0.45, 0.05, 0.05, 0.05, 0.40],  # no event class reaches its threshold: the fallback
            [0.60, 0.05, 0.05, 0.05, 0.25],  # brake clears 0.5
            [0.55, 0.05, 0.05, 0.35, 0.00],  # both qualify; collision clears its threshold by more
            [0.10, 0.10, 0.10, 0.10, 0.60],
        ],
        dtype=np.float32,
    )
    labels = [manifest.class_names[i] for i in decide_labels(probabilities, manifest)]
    assert labels == ["benign", "harsh_brake", "collision", "benign"]
    expected = decide_classes(probabilities, manifest.class_names, manifest.decision_thresholds)
    np.testing.assert_array_equal(decide_labels(probabilities, manifest), expected)
