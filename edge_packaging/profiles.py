"""Device profiles: what a class of edge device accepts, and the check of a model against one.

Profiles are data (`edge_packaging/device_profiles/*.json`, one file per profile). A profile names the
hardware revisions it covers, the largest bundle and model the device stores, the highest ONNX opset
per domain and the operators its runtime build includes, the latency budget for scoring one window
on one thread, and the alias of the signing key the device trusts (the platform maps aliases to
public keys; locally the alias resolves to the generated dev key).

The default ONNX domain is written `ai.onnx` in profiles and in operator names (`ai.onnx:Add`,
`ai.onnx.ml:TreeEnsembleClassifier`); a model's empty domain `""` means `ai.onnx`.

`check_model_against_profile` is pure: latency is measured by the caller (`measure_latency_ms` does it
with onnxruntime on one thread) and passed in, so the same figures can be checked against every
profile and recorded in the manifest.

`admit_model` is the one gate in front of onnxruntime: it applies the static half of that check (size,
opsets, local functions, operators) and returns an `AdmittedModel`, the only model bytes `runtime.device_session` (and
so `EdgeModelSession` and `measure_latency_ms`) will load. A device, the CLI's `run` and the build host
therefore cannot load a model that the profile would refuse.
"""

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from edge_packaging.bundle import BundleLimits, VerifiedBundle

DEFAULT_PROFILES_DIR = Path(__file__).parent / "device_profiles"
DEFAULT_DOMAIN = "ai.onnx"
_PROFILE_FIELDS = {
    "name",
    "description",
    "hardware_revs",
    "max_bundle_bytes",
    "max_model_bytes",
    "max_onnx_opset",
    "allowed_operators",
    "latency_budget_ms",
    "trusted_key",
}
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_DOMAIN_RE = re.compile(r"[A-Za-z0-9_.]{1,64}")
_OP_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class ProfileError(ValueError):
    """A device profile file that is malformed, or a profile name that is unknown."""


def canonical_domain(domain: str) -> str:
    """ONNX's default domain has two spellings, `""` and `ai.onnx`; profiles use `ai.onnx`."""
    return DEFAULT_DOMAIN if domain in ("", DEFAULT_DOMAIN) else domain


def operator_key(domain: str, op_type: str) -> str:
    """`domain:op_type` with the default domain spelled `ai.onnx`."""
    return f"{canonical_domain(domain)}:{op_type}"


@dataclass(frozen=True)
class DeviceProfile:
    """What one class of device accepts. Sizes in bytes; latency is the p99 for one window on one thread."""

    name: str
    description: str
    hardware_revs: tuple[str, ...]
    max_bundle_bytes: int
    max_model_bytes: int
    max_onnx_opset: Mapping[str, int]
    allowed_operators: frozenset[str] = field(repr=False)
    latency_budget_ms: float
    trusted_key: str

    def bundle_limits(self) -> BundleLimits:
        """The verifier limits a device of this profile applies before reading a bundle."""
        return BundleLimits(max_archive_bytes=self.max_bundle_bytes, max_model_bytes=self.max_model_bytes)

    def to_json(self) -> dict:
        operators: dict[str, list[str]] = {}
        for key in sorted(self.allowed_operators):
            domain, op_type = key.rsplit(":", 1)
            operators.setdefault(domain, []).append(op_type)
        return {
            "name": self.name,
            "description": self.description,
            "hardware_revs": list(self.hardware_revs),
            "max_bundle_bytes": self.max_bundle_bytes,
            "max_model_bytes": self.max_model_bytes,
            "max_onnx_opset": dict(sorted(self.max_onnx_opset.items())),
            "allowed_operators": operators,
            "latency_budget_ms": self.latency_budget_ms,
            "trusted_key": self.trusted_key,
        }


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and _NAME_RE.fullmatch(value) is not None


def _is_op_type(value: Any) -> bool:
    return isinstance(value, str) and _OP_RE.fullmatch(value) is not None


def _positive_int(obj: Mapping, key: str, source: str) -> int:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ProfileError(f"{source}: {key} must be a positive integer, got {value!r}")
    return value


def parse_profile(obj: Any, source: str = "profile") -> DeviceProfile:
    """A `DeviceProfile` from its JSON object; raise `ProfileError` naming the source and field."""
    if not isinstance(obj, Mapping):
        raise ProfileError(f"{source}: expected a JSON object")
    missing = sorted(_PROFILE_FIELDS - obj.keys())
    unknown = sorted(obj.keys() - _PROFILE_FIELDS)
    if missing:
        raise ProfileError(f"{source}: missing field(s) {', '.join(missing)}")
    if unknown:
        raise ProfileError(f"{source}: unknown field(s) {', '.join(map(str, unknown))}")
    name = obj["name"]
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ProfileError(f"{source}: invalid name {name!r}")
    for key in ("description", "trusted_key"):
        if not isinstance(obj[key], str) or not obj[key]:
            raise ProfileError(f"{source}: {key} must be a non-empty string")
    revs = obj["hardware_revs"]
    if not isinstance(revs, list) or not revs or not all(_is_name(r) for r in revs):
        raise ProfileError(f"{source}: hardware_revs must be a non-empty list of names")
    max_bundle_bytes = _positive_int(obj, "max_bundle_bytes", source)
    max_model_bytes = _positive_int(obj, "max_model_bytes", source)
    if max_model_bytes > max_bundle_bytes:
        raise ProfileError(f"{source}: max_model_bytes exceeds max_bundle_bytes")
    opsets = obj["max_onnx_opset"]
    if not isinstance(opsets, Mapping) or not opsets:
        raise ProfileError(f"{source}: max_onnx_opset must map domains to opset versions")
    max_onnx_opset: dict[str, int] = {}
    for domain, version in opsets.items():
        if not isinstance(domain, str) or (domain and not _DOMAIN_RE.fullmatch(domain)):
            raise ProfileError(f"{source}: invalid domain {domain!r} in max_onnx_opset")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ProfileError(f"{source}: max_onnx_opset[{domain!r}] must be a positive integer")
        if canonical_domain(domain) in max_onnx_opset:
            raise ProfileError(f"{source}: max_onnx_opset names the default domain twice")
        max_onnx_opset[canonical_domain(domain)] = version
    operators = obj["allowed_operators"]
    if not isinstance(operators, Mapping):
        raise ProfileError(f"{source}: allowed_operators must map domains to lists of operator types")
    allowed: set[str] = set()
    for domain, op_types in operators.items():
        if canonical_domain(domain) not in max_onnx_opset:
            raise ProfileError(
                f"{source}: allowed_operators names domain {domain!r} absent from max_onnx_opset"
            )
        if not isinstance(op_types, list) or not all(_is_op_type(op) for op in op_types):
            raise ProfileError(f"{source}: allowed_operators[{domain!r}] must be a list of operator types")
        allowed.update(operator_key(domain, op) for op in op_types)
    budget = obj["latency_budget_ms"]
    is_number = isinstance(budget, (int, float)) and not isinstance(budget, bool)
    if not is_number or not math.isfinite(budget) or budget <= 0:
        raise ProfileError(f"{source}: latency_budget_ms must be a positive number")
    return DeviceProfile(
        name=name,
        description=obj["description"],
        hardware_revs=tuple(revs),
        max_bundle_bytes=max_bundle_bytes,
        max_model_bytes=max_model_bytes,
        max_onnx_opset=max_onnx_opset,
        allowed_operators=frozenset(allowed),
        latency_budget_ms=float(budget),
        trusted_key=obj["trusted_key"],
    )


def load_profile_file(path: str | Path) -> DeviceProfile:
    """One profile from a JSON file."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ProfileError(f"{path}: cannot read profile ({error})") from None
    return parse_profile(obj, str(path))


def load_profiles(directory: str | Path = DEFAULT_PROFILES_DIR) -> dict[str, DeviceProfile]:
    """Every `*.json` profile in `directory`, by name. Names and hardware revisions must be unique."""
    profiles: dict[str, DeviceProfile] = {}
    owners: dict[str, str] = {}
    for path in sorted(Path(directory).glob("*.json")):
        profile = load_profile_file(path)
        if profile.name in profiles:
            raise ProfileError(f"{path}: duplicate profile name {profile.name}")
        for rev in profile.hardware_revs:
            if rev in owners:
                raise ProfileError(f"{path}: hardware rev {rev} is already covered by {owners[rev]}")
            owners[rev] = profile.name
        profiles[profile.name] = profile
    if not profiles:
        raise ProfileError(f"{directory}: no device profiles found")
    return profiles


def load_profile(name_or_path: str, directory: str | Path = DEFAULT_PROFILES_DIR) -> DeviceProfile:
    """A profile by name (from `directory`) or from a JSON file path (anything ending in `.json`)."""
    if name_or_path.endswith(".json") or Path(name_or_path).is_file():
        return load_profile_file(name_or_path)
    profiles = load_profiles(directory)
    if name_or_path not in profiles:
        raise ProfileError(f"unknown device profile {name_or_path!r} (known: {', '.join(sorted(profiles))})")
    return profiles[name_or_path]


def profile_for_hardware_rev(
    hardware_rev: str, profiles: Mapping[str, DeviceProfile]
) -> DeviceProfile | None:
    """The profile that covers `hardware_rev`, or None."""
    return next((p for p in profiles.values() if hardware_rev in p.hardware_revs), None)


@dataclass(frozen=True)
class ModelFacts:
    """What a profile check needs to know about a model, read once from its bytes."""

    model_bytes: int
    opsets: Mapping[str, int]
    operators: frozenset[str]
    standard_domain_functions: tuple[str, ...]
    """Model-local functions declared in an ONNX standard domain (`ai.onnx`, `ai.onnx.*`), refused."""


def _subgraphs(node: Any) -> Iterable[Any]:
    from onnx import AttributeProto

    for attribute in node.attribute:
        if attribute.type == AttributeProto.GRAPH:
            yield attribute.g
        elif attribute.type == AttributeProto.GRAPHS:
            yield from attribute.graphs


def _is_standard_domain(domain: str) -> bool:
    """ONNX reserves `ai.onnx` and `ai.onnx.*` for the operator sets a runtime implements itself."""
    canonical = canonical_domain(domain)
    return canonical == DEFAULT_DOMAIN or canonical.startswith(f"{DEFAULT_DOMAIN}.")


def _function_label(domain: str, name: str, overload: str) -> str:
    return operator_key(domain, name) + (f" (overload {overload})" if overload else "")


def model_facts(model_bytes: bytes) -> ModelFacts:
    """The opset imports (highest per domain) and every operator the runtime must provide: nodes of the
    main graph, of every subgraph (If/Loop/Scan bodies) and of the bodies of the local functions they
    call, where a call itself is not a runtime operator.

    A call resolves to a local function by (domain, name, overload), as ONNX resolves it, so one
    overload cannot hide another's body. A function in a standard domain is never treated as a
    function: it would shadow a runtime operator and erase that domain's opset from the check, so it
    is listed in `standard_domain_functions` (refused) and its calls count as operators. Only domains
    whose every node is a local-function call are left out of `opsets`."""
    import onnx

    model = onnx.load_model_from_string(model_bytes)
    functions = {(canonical_domain(f.domain), f.name, f.overload): f for f in model.functions}
    standard = sorted(_function_label(*key) for key in functions if _is_standard_domain(key[0]))
    operators: set[str] = set()
    runtime_domains: set[str] = set()
    visited_functions: set[tuple[str, str, str]] = set()
    pending = [list(model.graph.node)]
    while pending:
        for node in pending.pop():
            key = (canonical_domain(node.domain), node.op_type, node.overload)
            if key in functions and not _is_standard_domain(key[0]):
                if key not in visited_functions:
                    visited_functions.add(key)
                    pending.append(list(functions[key].node))
            else:
                operators.add(operator_key(node.domain, node.op_type))
                runtime_domains.add(key[0])
            pending.extend(list(graph.node) for graph in _subgraphs(node))

    function_only_domains = {
        domain for domain, _, _ in functions if not (domain in runtime_domains or _is_standard_domain(domain))
    }
    opsets: dict[str, int] = {}
    for entry in [*model.opset_import, *(e for f in model.functions for e in f.opset_import)]:
        domain = canonical_domain(entry.domain)
        if domain not in function_only_domains:
            opsets[domain] = max(opsets.get(domain, 0), entry.version)
    return ModelFacts(
        model_bytes=len(model_bytes),
        opsets=opsets,
        operators=frozenset(operators),
        standard_domain_functions=tuple(standard),
    )


@dataclass(frozen=True)
class ProfileCheck:
    """The outcome of checking a model (or bundle) against a profile.

    `failures` holds one line per failed limit, saying which limit and by how much; `figures` holds the
    measured values, JSON-ready for the manifest's `device_profiles` entry.
    """

    profile: DeviceProfile
    passed: bool
    failures: tuple[str, ...]
    figures: Mapping[str, Any] = field(default_factory=dict)


def _static_failures(facts: ModelFacts, profile: DeviceProfile) -> list[str]:
    """The limits a model must meet before it is loaded at all: size, opset per domain, no local function
    in a standard domain, operators."""
    failures: list[str] = []
    if facts.model_bytes > profile.max_model_bytes:
        failures.append(
            f"model size: {facts.model_bytes} bytes exceeds max_model_bytes {profile.max_model_bytes} "
            f"by {facts.model_bytes - profile.max_model_bytes} bytes"
        )
    for domain, version in sorted(facts.opsets.items()):
        limit = profile.max_onnx_opset.get(domain)
        if limit is None:
            failures.append(
                f"opset: domain {domain} (opset {version}) is not supported by the device runtime"
            )
        elif version > limit:
            failures.append(
                f"opset: {domain} opset {version} exceeds max_onnx_opset {limit} by {version - limit}"
            )
    if facts.standard_domain_functions:
        failures.append(
            f"functions: {len(facts.standard_domain_functions)} model-local function(s) in a standard "
            f"domain: {', '.join(facts.standard_domain_functions)}"
        )
    refused = sorted(facts.operators - profile.allowed_operators)
    if refused:
        failures.append(f"operators: {len(refused)} not in allowed_operators: {', '.join(refused)}")
    return failures


def _check_facts(
    facts: ModelFacts, profile: DeviceProfile, latency_ms: float | None
) -> tuple[list[str], dict]:
    failures = _static_failures(facts, profile)
    if latency_ms is None:
        failures.append("latency: not measured (pass latency_ms, e.g. from measure_latency_ms)")
    elif not math.isfinite(latency_ms) or latency_ms > profile.latency_budget_ms:
        failures.append(
            f"latency: p99 {latency_ms:.3f} ms exceeds latency_budget_ms {profile.latency_budget_ms:g} "
            f"by {latency_ms - profile.latency_budget_ms:.3f} ms"
        )
    figures = {
        "model_bytes": facts.model_bytes,
        "max_model_bytes": profile.max_model_bytes,
        "opsets": dict(sorted(facts.opsets.items())),
        "operator_types": len(facts.operators),
        "latency_budget_ms": profile.latency_budget_ms,
    }
    if latency_ms is not None and math.isfinite(latency_ms):
        figures["latency_p99_ms"] = round(float(latency_ms), 4)
    return failures, figures


def _facts_or_failure(model_bytes: bytes) -> ModelFacts | str:
    """The model's facts, or the one failure line of bytes that are not an ONNX model."""
    try:
        return model_facts(model_bytes)
    except Exception as error:  # noqa: BLE001 - protobuf's DecodeError and friends: not ONNX
        return f"model: not a readable ONNX model ({type(error).__name__})"


def check_model_against_profile(
    model_bytes: bytes, profile: DeviceProfile, latency_ms: float | None
) -> ProfileCheck:
    """Check an ONNX model against `profile`: size, opset per domain, every operator used, and the
    p99 latency `latency_ms` measured by the caller (None counts as a failure: unmeasured is unproven)."""
    facts = _facts_or_failure(model_bytes)
    if isinstance(facts, str):
        return ProfileCheck(profile, False, (facts,), {})
    failures, figures = _check_facts(facts, profile, latency_ms)
    return ProfileCheck(profile, not failures, tuple(failures), figures)


class ModelRefused(ValueError):
    """Device profiles refuse to load a model; `failures` maps each refusing profile to its reasons."""

    def __init__(self, failures: Mapping[str, Sequence[str]]) -> None:
        self.failures = {name: tuple(lines) for name, lines in failures.items()}
        reasons = "; ".join(f"{name}: {line}" for name, lines in self.failures.items() for line in lines)
        super().__init__(f"refused by device profile {reasons}")


_ADMISSION = object()


class AdmittedModel(bytes):
    """Model bytes every profile in `profiles` admitted: the only bytes `runtime.device_session` loads.

    It is `bytes`, so code that only hands the model on (`export.parity`) carries the admission with
    it; anything derived from it (a slice, a quantized copy) is plain bytes and must be admitted anew.
    Made only by `admit_model`.
    """

    profiles: tuple[DeviceProfile, ...]

    def __new__(cls, model_bytes: bytes, profiles: tuple[DeviceProfile, ...], admission: object) -> Self:
        if admission is not _ADMISSION:
            raise TypeError("an AdmittedModel is made only by admit_model")
        admitted = super().__new__(cls, model_bytes)
        admitted.profiles = profiles
        return admitted


def admit_model(model_bytes: bytes, profiles: Iterable[DeviceProfile]) -> AdmittedModel:
    """The gate in front of onnxruntime: the model passes every profile's static limits (size, opset per
    domain, local functions, operators), or `ModelRefused` lists each refusing profile's reasons.

    Latency is not part of admission: measuring it needs a session, which only an admitted model gets.
    """
    profiles = tuple(profiles)
    if not profiles:
        raise ValueError("a model is admitted against at least one device profile")
    facts = _facts_or_failure(model_bytes)
    if isinstance(facts, str):
        raise ModelRefused({profile.name: (facts,) for profile in profiles})
    refused = {profile.name: _static_failures(facts, profile) for profile in profiles}
    refused = {name: failures for name, failures in refused.items() if failures}
    if refused:
        raise ModelRefused(refused)
    return AdmittedModel(model_bytes, profiles, _ADMISSION)


def admit_model_for_build(model_bytes: bytes, targets: Iterable[DeviceProfile]) -> AdmittedModel:
    """The model admitted by those of `targets` that accept it; `ModelRefused`, with every target's
    reasons, when none does.

    The build host loads a model (parity, latency) only if some target device would load it; the
    targets that refuse it fail their profile check, which reports why.
    """
    targets = tuple(targets)
    try:
        return admit_model(model_bytes, targets)
    except ModelRefused as refusal:
        accepting = [profile for profile in targets if profile.name not in refusal.failures]
        if not accepting:
            raise
        return admit_model(model_bytes, accepting)


def check_bundle_against_profile(bundle: VerifiedBundle, profile: DeviceProfile) -> ProfileCheck:
    """A device's profile check of a verified bundle: the archive size, the model's static figures, and
    the latency recorded in the manifest when the bundle was built (a device does not re-measure)."""
    recorded = bundle.manifest.device_profiles.get(profile.name)
    latency = recorded.get("latency_p99_ms") if recorded is not None else None
    latency = float(latency) if isinstance(latency, (int, float)) and not isinstance(latency, bool) else None
    check = check_model_against_profile(bundle.model_bytes, profile, latency)
    failures = list(check.failures)
    if bundle.archive_bytes > profile.max_bundle_bytes:
        failures.insert(
            0,
            f"bundle size: {bundle.archive_bytes} bytes exceeds max_bundle_bytes {profile.max_bundle_bytes} "
            f"by {bundle.archive_bytes - profile.max_bundle_bytes} bytes",
        )
    if recorded is None:
        failures = [f for f in failures if not f.startswith("latency: not measured")]
        failures.append(f"profile: the manifest does not record a pass of {profile.name} at build time")
    figures = {
        **check.figures,
        "bundle_bytes": bundle.archive_bytes,
        "max_bundle_bytes": profile.max_bundle_bytes,
    }
    return ProfileCheck(profile, not failures, tuple(failures), figures)


@dataclass(frozen=True)
class LatencyFigures:
    """Latency of scoring one window at a time, in milliseconds.

    `p50_ms`/`p99_ms`/`mean_ms` are the calling thread's CPU time per inference: with one intra-op
    thread onnxruntime computes in the caller, so this is the model's compute latency on one core,
    without the time the host's scheduler gave to other processes (a device runs the model on a core
    of its own; a shared build host does not). The wall-clock figures are kept beside them.
    """

    p50_ms: float
    p99_ms: float
    mean_ms: float
    runs: int
    threads: int
    wall_p50_ms: float
    wall_p99_ms: float


def measure_latency_ms(
    model: AdmittedModel, *, runs: int = 500, warmup: int = 50, threads: int = 1, seed: int = 0
) -> LatencyFigures:
    """Time `runs` single-window inferences of an admitted model on `threads` intra-op threads
    (`runtime.device_session`), after `warmup` untimed ones, in thread CPU time and wall time (see
    `LatencyFigures`). Inputs are random, shaped from the graph with every free dimension set to 1."""
    import time

    import numpy as np

    from edge_packaging.runtime import device_session

    session = device_session(model, threads)
    rng = np.random.default_rng(seed)
    dtypes = {
        "tensor(float)": np.float32,
        "tensor(double)": np.float64,
        "tensor(int64)": np.int64,
        "tensor(int32)": np.int32,
    }
    feeds = {}
    for value in session.get_inputs():
        shape = [dim if isinstance(dim, int) and dim > 0 else 1 for dim in value.shape]
        dtype = dtypes.get(value.type)
        if dtype is None:
            raise ValueError(f"cannot make a test input of type {value.type} for {value.name}")
        feeds[value.name] = rng.standard_normal(shape).astype(dtype)
    for _ in range(warmup):
        session.run(None, feeds)
    cpu, wall = np.empty(runs), np.empty(runs)
    for i in range(runs):
        cpu_start, wall_start = time.thread_time_ns(), time.perf_counter_ns()
        session.run(None, feeds)
        wall[i] = (time.perf_counter_ns() - wall_start) / 1e6
        cpu[i] = (time.thread_time_ns() - cpu_start) / 1e6
    return LatencyFigures(
        p50_ms=float(np.percentile(cpu, 50)),
        p99_ms=float(np.percentile(cpu, 99)),
        mean_ms=float(cpu.mean()),
        runs=runs,
        threads=threads,
        wall_p50_ms=float(np.percentile(wall, 50)),
        wall_p99_ms=float(np.percentile(wall, 99)),
    )


def check_model_against_profiles(
    model_bytes: bytes, profiles: Iterable[DeviceProfile], *, latency: LatencyFigures | None = None
) -> dict[str, ProfileCheck]:
    """Measure latency once (one thread) unless given, and check the model against every profile.
    Latency is measured only on a model some profile admits (`admit_model_for_build`); when none does,
    every check fails, latency unmeasured. Passed checks' `figures` are what
    `bundle.build_bundle(device_profiles=...)` records."""
    profiles = tuple(profiles)
    if latency is None:
        try:
            latency = measure_latency_ms(admit_model_for_build(model_bytes, profiles))
        except ModelRefused:
            latency = None
    p99_ms = latency.p99_ms if latency is not None else None
    return {p.name: check_model_against_profile(model_bytes, p, p99_ms) for p in profiles}
