"""The manifest of an edge bundle: what the model is, what it expects and returns, where it came from.

A manifest is a frozen `Manifest`, written by `serialize_manifest` as canonical JSON: UTF-8, keys
sorted, no whitespace, non-ASCII kept as UTF-8, no NaN or infinity. Floats are written by Python's
shortest round-trip representation (`repr`), which every correct `strtod` reads back to the same
double. `parse_manifest` is strict: it accepts exactly the bytes `serialize_manifest` would produce
for the manifest it reads, and raises `ManifestError` with a one-line reason for anything else
(malformed JSON, unknown or missing fields, wrong types, unsafe file paths, non-canonical bytes). So
two different byte strings never parse to the same manifest, and the signature over the bytes is a
signature over the meaning.
"""

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from edge_packaging.decision import decide_classes, fallback_index
from edge_packaging.telemetry_contract import (
    HARSH_EVENT_CLASSES,
    IMU_CHANNELS,
    SAMPLE_RATE_HZ,
    SAMPLES_PER_WINDOW,
)

FORMAT_VERSION = 1
MODEL_FILE = "model.onnx"
DTYPES: frozenset[str] = frozenset(
    {"float32", "float16", "float64", "int8", "uint8", "int16", "int32", "int64", "bool"}
)
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_TENSOR_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_./:-]{0,127}")
_DIM_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
_PATH_COMPONENT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_KEY_ID_RE = re.compile(r"[0-9a-f]{16}")
_CREATED_AT_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
# Semantic Versioning 2.0.0, the regular expression given by semver.org.
_SEMVER_RE = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)
_MAX_PATH_CHARS = 255
_MAX_TEXT_CHARS = 4096


class ManifestError(ValueError):
    """A manifest that is malformed; the message is a one-line reason."""


def _fail(where: str, problem: str) -> ManifestError:
    # `where` may embed keys from the untrusted bytes: escape them so the reason stays one clean line.
    where = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in where)
    if len(where) > 120:
        where = where[:117] + "..."
    return ManifestError(f"{where}: {problem}" if where else problem)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_text(
    value: Any, where: str, *, pattern: re.Pattern | None = None, max_chars: int = _MAX_TEXT_CHARS
) -> str:
    if not isinstance(value, str):
        raise _fail(where, f"expected a string, got {type(value).__name__}")
    if len(value) > max_chars:
        raise _fail(where, f"longer than {max_chars} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _fail(where, "not encodable as UTF-8 (lone surrogate)") from None
    if pattern is not None and not pattern.fullmatch(value):
        raise _fail(where, f"invalid value {_describe(value)}")
    return value


def _check_int(value: Any, where: str, *, minimum: int) -> int:
    # bool is an int subclass in Python but a different JSON type: refuse it.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, f"expected an integer, got {type(value).__name__}")
    if value < minimum:
        raise _fail(where, f"must be >= {minimum}, got {value}")
    return value


def _check_mapping(value: Any, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise _fail(where, f"expected an object, got {type(value).__name__}")
    return value


def _check_sequence(value: Any, where: str) -> Sequence:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise _fail(where, f"expected a list, got {type(value).__name__}")
    return value


def _check_fields(value: Any, where: str, required: set[str], optional: set[str] = frozenset()) -> Mapping:
    obj = _check_mapping(value, where)
    for key in obj:
        if not isinstance(key, str):
            raise _fail(where, f"non-string key {_describe(key)}")
    missing = sorted(required - obj.keys())
    if missing:
        raise _fail(where, f"missing field(s) {', '.join(missing)}")
    unknown = sorted(obj.keys() - required - optional)
    if unknown:
        raise _fail(where, f"unknown field(s) {', '.join(_describe(k) for k in unknown)}")
    return obj


def _check_json_value(value: Any, where: str, depth: int = 0) -> Any:
    """A deep copy of `value` as plain JSON types (dict, list, str, int, finite float, bool, None)."""
    if depth > 32:
        raise _fail(where, "nested deeper than 32 levels")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(where, f"non-finite number {value}")
        return float(value)
    if isinstance(value, str):
        return _check_text(value, where, max_chars=1 << 16)
    if isinstance(value, Mapping):
        copy = {}
        for key, item in value.items():
            _check_text(key, f"{where} key", max_chars=_MAX_TEXT_CHARS)
            copy[key] = _check_json_value(item, f"{where}.{key}", depth + 1)
        return copy
    if isinstance(value, (list, tuple)):
        return [_check_json_value(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise _fail(where, f"not a JSON value ({type(value).__name__})")


def check_bundle_path(path: Any, where: str = "path") -> str:
    """Validate a file path inside a bundle: relative POSIX, no `..`, `.` or empty components, a safe
    character set, at most 255 characters. Return it, or raise `ManifestError`."""
    _check_text(path, where, max_chars=_MAX_PATH_CHARS)
    if path.startswith("/"):
        raise _fail(where, f"absolute path {_describe(path)}")
    parts = path.split("/")
    if ".." in parts:
        raise _fail(where, f"path with '..' {_describe(path)}")
    if any(not _PATH_COMPONENT_RE.fullmatch(part) for part in parts):
        raise _fail(where, f"unsafe path {_describe(path)}")
    return path


@dataclass(frozen=True)
class FileEntry:
    """A file of the bundle: its sha256 (lowercase hex) and size."""

    sha256: str
    size_bytes: int

    def __post_init__(self) -> None:
        _check_text(self.sha256, "sha256", pattern=_SHA256_RE)
        _check_int(self.size_bytes, "size_bytes", minimum=0)

    @classmethod
    def of(cls, data: bytes) -> "FileEntry":
        return cls(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))

    def to_json(self) -> dict:
        return {"sha256": self.sha256, "size_bytes": self.size_bytes}


def _check_shape(shape: Any, where: str) -> tuple[int | str, ...]:
    dims = _check_sequence(shape, where)
    if not dims:
        raise _fail(where, "empty shape")
    checked: list[int | str] = []
    for i, dim in enumerate(dims):
        if isinstance(dim, str):
            checked.append(_check_text(dim, f"{where}[{i}]", pattern=_DIM_RE))
        else:
            checked.append(_check_int(dim, f"{where}[{i}]", minimum=1))
    return tuple(checked)


def _check_unique_texts(values: Any, where: str, pattern: re.Pattern | None = None) -> tuple[str, ...]:
    texts = tuple(
        _check_text(v, f"{where}[{i}]", pattern=pattern, max_chars=128)
        for i, v in enumerate(_check_sequence(values, where))
    )
    if len(set(texts)) != len(texts):
        raise _fail(where, "duplicate names")
    return texts


@dataclass(frozen=True)
class TensorSpec:
    """A model input: name, element type, shape (ints, or names for free dimensions such as the batch),
    the channel names along the channel axis and one unit per channel (or one unit when the tensor has
    no channels), and the sample rate of a time axis if it has one."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    units: tuple[str, ...]
    channel_names: tuple[str, ...] = ()
    sample_rate_hz: int | None = None

    def __post_init__(self) -> None:
        where = f"input {self.name!r}" if isinstance(self.name, str) else "input"
        _check_text(self.name, f"{where} name", pattern=_TENSOR_NAME_RE)
        if self.dtype not in DTYPES:
            raise _fail(f"{where} dtype", f"unsupported {_describe(self.dtype)}")
        object.__setattr__(self, "shape", _check_shape(self.shape, f"{where} shape"))
        channel_names = _check_unique_texts(self.channel_names, f"{where} channel_names")
        object.__setattr__(self, "channel_names", channel_names)
        units = tuple(
            _check_text(u, f"{where} units[{i}]", max_chars=32)
            for i, u in enumerate(_check_sequence(self.units, f"{where} units"))
        )
        expected_units = len(self.channel_names) or 1
        if len(units) != expected_units:
            raise _fail(f"{where} units", f"expected {expected_units} unit(s), got {len(units)}")
        object.__setattr__(self, "units", units)
        if self.sample_rate_hz is not None:
            _check_int(self.sample_rate_hz, f"{where} sample_rate_hz", minimum=1)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "units": list(self.units),
            "channel_names": list(self.channel_names),
            "sample_rate_hz": self.sample_rate_hz,
        }

    @classmethod
    def from_json(cls, value: Any, where: str) -> "TensorSpec":
        fields = {"name", "dtype", "shape", "units", "channel_names", "sample_rate_hz"}
        obj = _check_fields(value, where, fields)
        return cls(
            name=obj["name"],
            dtype=obj["dtype"],
            shape=obj["shape"],
            units=obj["units"],
            channel_names=obj["channel_names"],
            sample_rate_hz=obj["sample_rate_hz"],
        )


@dataclass(frozen=True)
class OutputSpec:
    """The model output: class scores, one column per class name, in this order."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_text(self.name, "output name", pattern=_TENSOR_NAME_RE)
        if self.dtype not in DTYPES:
            raise _fail("output dtype", f"unsupported {_describe(self.dtype)}")
        object.__setattr__(self, "shape", _check_shape(self.shape, "output shape"))
        names = _check_unique_texts(self.class_names, "output class_names", pattern=_NAME_RE)
        if not names:
            raise _fail("output class_names", "empty")
        object.__setattr__(self, "class_names", names)
        last = self.shape[-1]
        if isinstance(last, int) and last != len(names):
            raise _fail("output shape", f"last dimension {last} != {len(names)} class names")

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "class_names": list(self.class_names),
        }

    @classmethod
    def from_json(cls, value: Any) -> "OutputSpec":
        obj = _check_fields(value, "output", {"name", "dtype", "shape", "class_names"})
        return cls(name=obj["name"], dtype=obj["dtype"], shape=obj["shape"], class_names=obj["class_names"])


HARSH_EVENT_INPUTS: tuple[TensorSpec, ...] = (
    TensorSpec(
        name="imu",
        dtype="float32",
        shape=("N", len(IMU_CHANNELS), SAMPLES_PER_WINDOW),
        channel_names=IMU_CHANNELS,
        units=("m/s^2", "m/s^2", "m/s^2", "rad/s", "rad/s", "rad/s"),
        sample_rate_hz=SAMPLE_RATE_HZ,
    ),
    TensorSpec(name="speed_kph", dtype="float32", shape=("N",), units=("km/h",)),
)
"""The inputs of the harsh-event model: raw IMU windows (channel-major) and GPS speed."""

HARSH_EVENT_OUTPUT = OutputSpec(
    name="probabilities",
    dtype="float32",
    shape=("N", len(HARSH_EVENT_CLASSES)),
    class_names=HARSH_EVENT_CLASSES,
)
"""The output of the harsh-event model: one probability per class."""


def utc_timestamp(moment: datetime | None = None) -> str:
    """`moment` (default now) as the manifest's `created_at` form: `YYYY-MM-DDTHH:MM:SSZ`, UTC, seconds."""
    moment = datetime.now(UTC) if moment is None else moment
    if moment.tzinfo is None:
        raise ValueError("created_at needs a time zone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_created_at(value: Any) -> str:
    _check_text(value, "created_at", pattern=_CREATED_AT_RE)
    try:
        datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise _fail("created_at", f"not a valid UTC time {_describe(value)}") from None
    return value


def _check_threshold(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, f"expected a number, got {type(value).__name__}")
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise _fail(where, f"must be within [0, 1], got {value}")
    return float(value)


@dataclass(frozen=True, eq=False)
class Manifest:
    """Everything a device needs to know about a bundle, and everything the platform needs to trace it.

    `files` maps bundle paths to their hashes (format 1: exactly `model.onnx`); `decision_thresholds`
    gives one threshold per class, exactly one of them 0 (the fallback class), as the decision rule of
    `edge_packaging.decision` takes them; `device_profiles` maps each device profile the
    model passed at build time to its measured figures; `lineage` is free-form JSON (data partitions,
    code version, validation results, Dagster run id, ...); `signing_key_id` names the key that signs
    the manifest (`signing.key_id`). Constructing a `Manifest` validates it (`ManifestError`).
    Two manifests are equal when their canonical bytes are (so 1 and 1.0 in lineage differ).
    """

    model_name: str
    model_version: str
    created_at: str
    files: Mapping[str, FileEntry]
    inputs: tuple[TensorSpec, ...]
    output: OutputSpec
    decision_thresholds: Mapping[str, float]
    signing_key_id: str
    device_profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    lineage: Mapping[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if type(self.format_version) is not int or self.format_version != FORMAT_VERSION:
            problem = f"unsupported {_describe(self.format_version)}, expected {FORMAT_VERSION}"
            raise _fail("format_version", problem)
        _check_text(self.model_name, "model_name", pattern=_NAME_RE)
        _check_text(self.model_version, "model_version", pattern=_SEMVER_RE, max_chars=128)
        _check_created_at(self.created_at)
        _check_text(self.signing_key_id, "signing_key_id", pattern=_KEY_ID_RE)

        files = {}
        for path, entry in _check_mapping(self.files, "files").items():
            check_bundle_path(path, "files")
            if not isinstance(entry, FileEntry):
                raise _fail(f"files[{path}]", f"expected a FileEntry, got {type(entry).__name__}")
            files[path] = entry
        if not files:
            raise _fail("files", "empty")
        object.__setattr__(self, "files", dict(sorted(files.items())))

        inputs = tuple(_check_sequence(self.inputs, "inputs"))
        if not inputs or not all(isinstance(spec, TensorSpec) for spec in inputs):
            raise _fail("inputs", "expected one or more TensorSpec")
        if len({spec.name for spec in inputs}) != len(inputs):
            raise _fail("inputs", "duplicate input names")
        object.__setattr__(self, "inputs", inputs)
        if not isinstance(self.output, OutputSpec):
            raise _fail("output", f"expected an OutputSpec, got {type(self.output).__name__}")

        thresholds = {}
        for name, value in _check_mapping(self.decision_thresholds, "decision_thresholds").items():
            _check_text(name, "decision_thresholds key")
            thresholds[name] = _check_threshold(value, f"decision_thresholds[{name}]")
        if set(thresholds) != set(self.output.class_names):
            raise _fail("decision_thresholds", "must give exactly one threshold per output class")
        try:
            fallback_index(self.output.class_names, thresholds)
        except ValueError:
            zeros = sum(1 for value in thresholds.values() if value == 0.0)
            problem = f"exactly one class (the fallback) must have threshold 0, got {zeros}"
            raise _fail("decision_thresholds", problem) from None
        object.__setattr__(self, "decision_thresholds", {n: thresholds[n] for n in self.output.class_names})

        profiles = {}
        for name, figures in _check_mapping(self.device_profiles, "device_profiles").items():
            _check_text(name, "device_profiles key", pattern=_NAME_RE)
            where = f"device_profiles[{name}]"
            profiles[name] = _check_json_value(_check_mapping(figures, where), where)
        object.__setattr__(self, "device_profiles", dict(sorted(profiles.items())))
        lineage = _check_json_value(_check_mapping(self.lineage, "lineage"), "lineage")
        object.__setattr__(self, "lineage", lineage)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Manifest):
            return NotImplemented
        return serialize_manifest(self) == serialize_manifest(other)

    def __hash__(self) -> int:
        return hash(serialize_manifest(self))

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.output.class_names

    @property
    def fallback_class(self) -> str:
        """The class decided when no event class reaches its threshold (the one with threshold 0)."""
        return self.class_names[fallback_index(self.class_names, self.decision_thresholds)]

    @property
    def model_sha256(self) -> str:
        return self.files[MODEL_FILE].sha256

    def to_json(self) -> dict:
        return {
            "format_version": self.format_version,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "created_at": self.created_at,
            "files": {path: entry.to_json() for path, entry in self.files.items()},
            "inputs": [spec.to_json() for spec in self.inputs],
            "output": self.output.to_json(),
            "decision_thresholds": dict(self.decision_thresholds),
            "device_profiles": {name: dict(figures) for name, figures in self.device_profiles.items()},
            "lineage": dict(self.lineage),
            "signing_key_id": self.signing_key_id,
        }


_MANIFEST_FIELDS = {
    "format_version",
    "model_name",
    "model_version",
    "created_at",
    "files",
    "inputs",
    "output",
    "decision_thresholds",
    "device_profiles",
    "lineage",
    "signing_key_id",
}


def _canonical_json(value: Any) -> bytes:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def serialize_manifest(manifest: Manifest) -> bytes:
    """The canonical bytes of `manifest` (what is signed and stored as `manifest.json`)."""
    return _canonical_json(manifest.to_json())


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    result = {}
    for key, value in pairs:
        if key in result:
            raise ManifestError(f"duplicate key {_describe(key)}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ManifestError(f"non-finite number {name}")


def load_manifest_json(data: bytes) -> Any:
    """The JSON value of manifest bytes, with duplicate keys, NaN and infinity refused."""
    if not isinstance(data, (bytes, bytearray)):
        raise ManifestError(f"expected bytes, got {type(data).__name__}")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as error:
        raise ManifestError(f"not UTF-8 at byte {error.start}") from None
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant)
    except ManifestError:
        raise
    except RecursionError:
        raise ManifestError("not JSON: nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, and int strings over Python's digit limit
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ManifestError(f"not JSON: {reason}") from None


def parse_manifest(data: bytes) -> Manifest:
    """Parse manifest bytes strictly; raise `ManifestError` with a one-line reason on anything wrong."""
    obj = _check_fields(load_manifest_json(data), "", _MANIFEST_FIELDS)
    version = obj["format_version"]
    if type(version) is not int or version != FORMAT_VERSION:
        raise ManifestError(f"format_version: unsupported {_describe(version)}, expected {FORMAT_VERSION}")
    files = {
        path: FileEntry(**_check_fields(entry, f"files[{path}]", {"sha256", "size_bytes"}))
        for path, entry in _check_mapping(obj["files"], "files").items()
    }
    inputs = tuple(
        TensorSpec.from_json(spec, f"inputs[{i}]")
        for i, spec in enumerate(_check_sequence(obj["inputs"], "inputs"))
    )
    manifest = Manifest(
        format_version=version,
        model_name=obj["model_name"],
        model_version=obj["model_version"],
        created_at=obj["created_at"],
        files=files,
        inputs=inputs,
        output=OutputSpec.from_json(obj["output"]),
        decision_thresholds=obj["decision_thresholds"],
        device_profiles=obj["device_profiles"],
        lineage=obj["lineage"],
        signing_key_id=obj["signing_key_id"],
    )
    if serialize_manifest(manifest) != bytes(data):
        raise ManifestError("not in canonical form (sorted keys, no spaces, as serialize_manifest writes)")
    return manifest


def decide_labels(probabilities: Any, manifest: Manifest) -> Any:
    """Class indices [N] decided from probabilities [N, classes] with the manifest's thresholds, by the
    platform's one decision rule (`edge_packaging.decision.decide_classes`, shared with evaluation)."""
    return decide_classes(probabilities, manifest.class_names, manifest.decision_thresholds)
