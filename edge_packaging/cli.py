"""`python -m edge_packaging`: verify, inspect and run edge bundles as a device would.

    verify BUNDLE --public-key [ALIAS=]PEM [--public-key [ALIAS=]PEM ...] [--profile NAME_OR_JSON]
    inspect BUNDLE [--public-key [ALIAS=]PEM] [--json]
    run BUNDLE --public-key [ALIAS=]PEM --input X.parquet --output Y.parquet [--threads 1]
        [--profile NAME_OR_JSON]

`--public-key` may be left out when `FLEETML_PUBLIC_KEY` holds a trusted public key PEM's path (with
an optional `ALIAS=` in front). Every key given is trusted, except under `verify --profile P`: a device
of profile P trusts only the key of the alias P names (`trusted_key`), so only keys given as
`--public-key <that alias>=PEM` count there; a local dev key stands for any alias by being given so.

Exit status: 0 success; 1 the bundle is rejected (or fails the profile, or its signature does not
verify in `inspect`); 2 usage errors (bad arguments, unreadable key, unknown profile, no key for the
profile's alias); 3 unusable input data for `run`. Every failure prints one line on stderr.
`inspect` without a key prints the unchecked manifest and says so (on stderr with `--json`, so
stdout stays the manifest); with a key it verifies first and prints only a verified manifest.

`run` loads the model only once a device profile admits it (`profiles.admit_model`: size, opsets, local
functions, operators), and refuses it (status 1) otherwise: with `--profile P`, profile P (with P's
size limits and only the key of P's alias, as `verify --profile`); without, every profile the signed
manifest was built for (`device_profiles`), so a bundle that names none, or one unknown here, is refused.
It writes one row per input row: `event_id`, `probability_<class>` for every class of the manifest,
`predicted_label` (the manifest's thresholds under the platform's one decision rule,
`edge_packaging.decision.decide_classes`: among the event classes that reach their threshold, the one
that clears it by the largest factor, else the fallback class with threshold 0) and `inference_ms`
(wall time of scoring that one window alone, as a device scores it). Model name, version, bundle sha256 and
signing key id are stored in the Parquet file's metadata.
"""

import argparse
import json
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_packaging.bundle import (
    BUNDLE_MEMBERS,
    MANIFEST_FILE,
    BundleContents,
    BundleLimits,
    BundleRejected,
    VerifiedBundle,
    read_bundle_members,
    verify_bundle,
)
from edge_packaging.manifest import MODEL_FILE, Manifest, ManifestError, parse_manifest
from edge_packaging.profiles import (
    AdmittedModel,
    DeviceProfile,
    ModelRefused,
    ProfileError,
    admit_model,
    check_bundle_against_profile,
    load_profile,
    load_profiles,
)
from edge_packaging.signing import KeyLoadError, load_public_key_file

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
PUBLIC_KEY_ENV = "FLEETML_PUBLIC_KEY"
REVOKED_KEYS_ENV = "FLEETML_REVOKED_KEY_IDS"
PROBABILITY_PREFIX = "probability_"
_ALIASED_KEY_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,63})=(.+)")


class CliError(Exception):
    """A failure with an exit status; the message is the one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _printable(text: str) -> str:
    """`text` with control and other non-printable characters escaped: manifest strings come from the
    bundle, and an escape sequence in them must not reach the terminal."""
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)


def _trusted_keys(specs: Sequence[str] | None) -> list[tuple[str | None, Ed25519PublicKey]]:
    """The keys of `--public-key [ALIAS=]PEM` (or `$FLEETML_PUBLIC_KEY`), each with its alias or None.
    An existing file is always a path, even with a `=` in its name."""
    specs = list(specs or [])
    if not specs and os.environ.get(PUBLIC_KEY_ENV):
        specs = [os.environ[PUBLIC_KEY_ENV]]
    if not specs:
        raise CliError(EXIT_USAGE, f"no trusted public key: pass --public-key PEM or set {PUBLIC_KEY_ENV}")
    keys = []
    for spec in specs:
        aliased = None if Path(spec).is_file() else _ALIASED_KEY_RE.fullmatch(spec)
        alias, path = aliased.groups() if aliased else (None, spec)
        try:
            keys.append((alias, load_public_key_file(path)))
        except KeyLoadError as error:
            raise CliError(EXIT_USAGE, str(error)) from None
    return keys


def _profile_keys(
    keys: list[tuple[str | None, Ed25519PublicKey]], profile: DeviceProfile
) -> list[Ed25519PublicKey]:
    """The keys a device of `profile` holds: those given for its `trusted_key` alias. A key given
    without that alias is not the profile's, or a bundle signed by any key at hand would pass."""
    chosen = [key for alias, key in keys if alias == profile.trusted_key]
    if not chosen:
        raise CliError(
            EXIT_USAGE,
            f"profile {profile.name} trusts key alias {profile.trusted_key}: "
            f"pass its key as --public-key {profile.trusted_key}=PEM",
        )
    return chosen


def revoked_key_ids(given: Sequence[str] | None) -> frozenset[str]:
    """Key ids given with `--revoked-key-id`, and those listed (comma-separated) in `$FLEETML_REVOKED_KEY_IDS`."""
    listed = os.environ.get(REVOKED_KEYS_ENV, "")
    return frozenset(key_id.strip() for key_id in [*(given or []), *listed.split(",")] if key_id.strip())


def _verify(
    bundle: str,
    key_specs: Sequence[str] | None,
    limits: BundleLimits = BundleLimits(),
    profile: DeviceProfile | None = None,
    revoked: Sequence[str] | None = None,
) -> VerifiedBundle:
    keys = _trusted_keys(key_specs)
    trusted = _profile_keys(keys, profile) if profile is not None else [key for _, key in keys]
    try:
        return verify_bundle(bundle, trusted, limits, revoked_key_ids(revoked))
    except BundleRejected as error:
        raise CliError(EXIT_REJECTED, f"REJECTED: {error.reason}") from None


def _verify_as_profile(args: argparse.Namespace) -> tuple[VerifiedBundle, DeviceProfile | None]:
    """The bundle verified with `--profile`'s size limits and trusted key when one is given."""
    profile = None
    if args.profile:
        try:
            profile = load_profile(args.profile)
        except ProfileError as error:
            raise CliError(EXIT_USAGE, str(error)) from None
    limits = profile.bundle_limits() if profile else BundleLimits()
    return _verify(args.bundle, args.public_key, limits, profile, args.revoked_key_id), profile


def _command_verify(args: argparse.Namespace) -> int:
    verified, profile = _verify_as_profile(args)
    manifest = verified.manifest
    summary = (
        f"OK {manifest.model_name} {manifest.model_version}: signed by {verified.signing_key_id}, "
        f"model sha256 {manifest.model_sha256[:16]}, bundle sha256 {verified.bundle_sha256[:16]}, "
        f"{verified.archive_bytes} bytes"
    )
    if profile is not None:
        check = check_bundle_against_profile(verified, profile)
        if not check.passed:
            raise CliError(EXIT_REJECTED, f"REJECTED: profile {profile.name}: {'; '.join(check.failures)}")
        summary += f", profile {profile.name} passed (trusts key alias {profile.trusted_key})"
    print(summary)
    return EXIT_OK


def _format_shape(shape: Sequence) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _manifest_summary(manifest: Manifest) -> list[str]:
    lines = [
        f"model      {manifest.model_name} {manifest.model_version} "
        f"(created {manifest.created_at}, format {manifest.format_version})",
    ]
    for path, entry in manifest.files.items():
        lines.append(f"file       {path}  {entry.size_bytes} bytes  sha256 {entry.sha256}")
    for spec in manifest.inputs:
        if spec.channel_names:
            channels = ", ".join(f"{c} ({u})" for c, u in zip(spec.channel_names, spec.units, strict=True))
        else:
            channels = spec.units[0]
        rate = f" at {spec.sample_rate_hz} Hz" if spec.sample_rate_hz else ""
        lines.append(f"input      {spec.name} {spec.dtype} {_format_shape(spec.shape)}: {channels}{rate}")
    output = manifest.output
    lines.append(f"output     {output.name} {output.dtype} {_format_shape(output.shape)}")
    for name in manifest.class_names:
        role = "  (fallback)" if name == manifest.fallback_class else ""
        lines.append(f"class      {name}  threshold {manifest.decision_thresholds[name]:g}{role}")
    if not manifest.device_profiles:
        lines.append("profiles   (none recorded)")
    for name, figures in manifest.device_profiles.items():
        lines.append(f"profile    {name}  {json.dumps(figures, sort_keys=True)}")
    lines.append(f"signed by  {manifest.signing_key_id}")
    lineage = json.dumps(manifest.lineage, sort_keys=True, indent=2, ensure_ascii=False).splitlines()
    lines.append(f"lineage    {lineage[0]}")
    lines.extend(f"           {line}" for line in lineage[1:])
    return lines


def _unchecked_manifest(bundle: str) -> tuple[Manifest, BundleContents]:
    """The manifest of a structurally sound bundle, signature not checked."""
    try:
        contents = read_bundle_members(bundle)
    except BundleRejected as error:
        raise CliError(EXIT_REJECTED, f"REJECTED: {error.reason}") from None
    if MANIFEST_FILE not in contents.members:
        raise CliError(EXIT_REJECTED, f"REJECTED: missing member(s): {MANIFEST_FILE}")
    try:
        return parse_manifest(contents.members[MANIFEST_FILE]), contents
    except ManifestError as error:
        raise CliError(EXIT_REJECTED, f"REJECTED: manifest does not parse: {error}") from None


def _command_inspect(args: argparse.Namespace) -> int:
    """With a key, only a verified manifest is printed (a script reading `--json` trusts exit 0);
    without one, the manifest is printed with a note that its signature was not checked."""
    checked = bool(args.public_key) or bool(os.environ.get(PUBLIC_KEY_ENV))
    if checked:
        verified = _verify(args.bundle, args.public_key, revoked=args.revoked_key_id)
        manifest, members = verified.manifest, BUNDLE_MEMBERS
        path, size, sha256 = verified.path, verified.archive_bytes, verified.bundle_sha256
        signature = f"valid, by trusted key {verified.signing_key_id}"
    else:
        manifest, contents = _unchecked_manifest(args.bundle)
        members = tuple(contents.members)
        path, size, sha256 = contents.path, contents.archive_bytes, contents.archive_sha256
        signature = "not checked (pass --public-key to verify)"
    if args.json:
        print(json.dumps(manifest.to_json(), sort_keys=True, indent=2))
        if not checked:
            print(f"signature {signature}", file=sys.stderr)
        return EXIT_OK
    print(f"bundle     {path}  {size} bytes  sha256 {sha256}")
    print(f"members    {', '.join(members)}")
    for line in _manifest_summary(manifest):
        print(_printable(line))
    print(f"signature  {signature}")
    return EXIT_OK


def _input_arrays(table, manifest: Manifest) -> dict:
    """The model's feeds from the Parquet columns named like its inputs (list columns reshaped)."""
    import numpy as np
    import pyarrow as pa

    required = ("event_id", *(spec.name for spec in manifest.inputs))
    missing = [name for name in required if name not in table.column_names]
    if missing:
        raise CliError(EXIT_BAD_INPUT, f"input: missing column(s) {', '.join(missing)}")
    feeds = {}
    for spec in manifest.inputs:
        column = table.column(spec.name).combine_chunks()
        if column.null_count:
            raise CliError(EXIT_BAD_INPUT, f"input: column {spec.name} has {column.null_count} null value(s)")
        fixed = spec.shape[1:]
        if any(not isinstance(d, int) for d in fixed):
            raise CliError(EXIT_REJECTED, f"REJECTED: input {spec.name} has free dimensions beyond the batch")
        per_row = int(np.prod(fixed)) if fixed else 1
        kind = column.type
        if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
            lengths = column.value_lengths().to_numpy(zero_copy_only=False)
            if len(lengths) and (lengths.min() != per_row or lengths.max() != per_row):
                raise CliError(EXIT_BAD_INPUT, f"input: every {spec.name} row must hold {per_row} values")
            values = column.flatten().to_numpy(zero_copy_only=False)
        elif fixed:
            raise CliError(EXIT_BAD_INPUT, f"input: column {spec.name} must be a list of {per_row} values")
        else:
            values = column.to_numpy(zero_copy_only=False)
        try:
            feeds[spec.name] = np.ascontiguousarray(values, dtype=spec.dtype).reshape(len(column), *fixed)
        except (ValueError, TypeError) as error:
            raise CliError(EXIT_BAD_INPUT, f"input: column {spec.name}: {_one_line(error)}") from None
    return feeds


def _admitted_model(args: argparse.Namespace) -> tuple[VerifiedBundle, AdmittedModel]:
    """The bundle verified as a device of the run's profile(s) verifies it, and its model admitted by
    them: `--profile`, else the profiles the manifest was built for (see the module docstring)."""
    verified, profile = _verify_as_profile(args)
    if profile is not None:
        profiles = [profile]
    else:
        targets = sorted(verified.manifest.device_profiles)
        known = load_profiles()
        unknown = [name for name in targets if name not in known]
        if not targets or unknown:
            named = f"unknown device profile(s) {', '.join(unknown)}" if unknown else "no device profile"
            reason = f"REJECTED: the manifest names {named}; pass --profile NAME_OR_JSON"
            raise CliError(EXIT_REJECTED, reason)
        profiles = [known[name] for name in targets]
    try:
        return verified, admit_model(verified.model_bytes, profiles)
    except ModelRefused as refusal:
        raise CliError(EXIT_REJECTED, f"REJECTED: {MODEL_FILE} {refusal}") from None


def _command_run(args: argparse.Namespace) -> int:
    import time

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from edge_packaging.manifest import decide_labels
    from edge_packaging.runtime import device_session

    verified, admitted = _admitted_model(args)
    manifest = verified.manifest
    try:
        table = pq.read_table(args.input)
    except (OSError, pa.ArrowException) as error:
        raise CliError(EXIT_BAD_INPUT, f"input: cannot read {args.input}: {_one_line(error)}") from None
    feeds = _input_arrays(table, manifest)

    try:
        session = device_session(admitted, args.threads)
    except Exception as error:  # onnxruntime raises its own exception types for unloadable models
        reason = f"REJECTED: {MODEL_FILE} does not load in onnxruntime: {_one_line(error)}"
        raise CliError(EXIT_REJECTED, reason) from None
    classes = manifest.class_names
    rows = table.num_rows
    probabilities = np.empty((rows, len(classes)), dtype=np.float32)
    inference_ms = np.empty(rows, dtype=np.float64)
    output_names = [manifest.output.name]
    for i in range(rows):
        row_feeds = {name: values[i : i + 1] for name, values in feeds.items()}
        start = time.perf_counter_ns()
        try:
            (scores,) = session.run(output_names, row_feeds)
        except Exception as error:  # onnxruntime's failure types are not exported in one place
            reason = f"REJECTED: the model failed on row {i}: {_one_line(error)}"
            raise CliError(EXIT_REJECTED, reason) from None
        inference_ms[i] = (time.perf_counter_ns() - start) / 1e6
        if scores.shape != (1, len(classes)):
            reason = f"REJECTED: the model returned shape {scores.shape}, expected (1, {len(classes)})"
            raise CliError(EXIT_REJECTED, reason)
        probabilities[i] = scores[0]
    labels = decide_labels(probabilities, manifest) if rows else np.empty(0, dtype=np.int64)

    columns = {"event_id": table.column("event_id").cast(pa.string())}
    for index, name in enumerate(classes):
        columns[f"{PROBABILITY_PREFIX}{name}"] = pa.array(probabilities[:, index], type=pa.float32())
    columns["predicted_label"] = pa.array([classes[k] for k in labels], type=pa.string())
    columns["inference_ms"] = pa.array(inference_ms, type=pa.float64())
    metadata = {
        "fleetml.model_name": manifest.model_name,
        "fleetml.model_version": manifest.model_version,
        "fleetml.bundle_sha256": verified.bundle_sha256,
        "fleetml.signing_key_id": verified.signing_key_id,
    }
    result = pa.table(columns).replace_schema_metadata(metadata)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(result, tmp_name)
        os.replace(tmp_name, output)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    p50, p99 = np.percentile(inference_ms, [50, 99]) if rows else (0.0, 0.0)
    print(
        f"scored {rows} row(s) with {manifest.model_name} {manifest.model_version} -> {output} "
        f"(p50 {p50:.3f} ms, p99 {p99:.3f} ms per window, {args.threads} thread(s))"
    )
    return EXIT_OK


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m edge_packaging", description="Verify, inspect and run fleetml edge bundles."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    key_help = f"trusted Ed25519 public key PEM, or ALIAS=PEM (repeatable; default: ${PUBLIC_KEY_ENV})"

    verify = commands.add_parser("verify", help="check a bundle as a device does; exit 0 when valid")
    verify.add_argument("bundle")
    verify.add_argument("--public-key", action="append", metavar="[ALIAS=]PEM", help=key_help)
    verify.add_argument(
        "--revoked-key-id", action="append", metavar="KEY_ID",
        help=f"refuse a bundle signed by this key id, even a trusted one (repeatable; also ${REVOKED_KEYS_ENV})",
    )
    verify.add_argument(
        "--profile",
        metavar="NAME_OR_JSON",
        help="also check against a device profile, trusting only the key given for its trusted_key alias",
    )
    verify.set_defaults(handler=_command_verify)

    inspect = commands.add_parser("inspect", help="print a bundle's manifest")
    inspect.add_argument(
        "--revoked-key-id", action="append", metavar="KEY_ID",
        help=f"refuse a bundle signed by this key id, even a trusted one (repeatable; also ${REVOKED_KEYS_ENV})",
    )
    inspect.add_argument("bundle")
    inspect.add_argument(
        "--public-key",
        action="append",
        metavar="[ALIAS=]PEM",
        help="verify first; print only a verified manifest",
    )
    inspect.add_argument("--json", action="store_true", help="print the manifest as JSON")
    inspect.set_defaults(handler=_command_inspect)

    run = commands.add_parser("run", help="verify a bundle, then score telemetry rows one window at a time")
    run.add_argument("bundle")
    run.add_argument("--public-key", action="append", metavar="[ALIAS=]PEM", help=key_help)
    run.add_argument(
        "--revoked-key-id", action="append", metavar="KEY_ID",
        help=f"refuse a bundle signed by this key id, even a trusted one (repeatable; also ${REVOKED_KEYS_ENV})",
    )
    run.add_argument(
        "--input", required=True, metavar="X.parquet", help="telemetry rows (event_id and the model inputs)"
    )
    run.add_argument("--output", required=True, metavar="Y.parquet")
    run.add_argument(
        "--threads", type=_positive_int, default=1, help="onnxruntime intra-op threads (default 1)"
    )
    run.add_argument(
        "--profile",
        metavar="NAME_OR_JSON",
        help="the device profile that must admit the model, trusting only the key given for its "
        "trusted_key alias (default: every profile the manifest was built for)",
    )
    run.set_defaults(handler=_command_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except CliError as error:
        print(_one_line(str(error)), file=sys.stderr)
        return error.status
