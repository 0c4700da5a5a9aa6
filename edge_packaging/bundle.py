"""The edge bundle: one uncompressed tar archive holding a model, its manifest and a signature.

Format 1 holds exactly three regular-file members, written in this order so that a device streaming
the archive can check the signature before it reads the (large) model:

    manifest.json   canonical manifest bytes (`manifest.serialize_manifest`)
    manifest.sig    64-byte detached Ed25519 signature over the exact bytes of manifest.json
    model.onnx      the model; its sha256 and size are in the manifest

`build_bundle` writes one atomically and reproducibly (fixed tar headers, deterministic signature).
`verify_bundle` is the device's check: it reads members into memory (never extracting to disk, never
following links) and raises `BundleRejected` with a one-line reason for anything that does not check
out. Nothing in a bundle is ever unpickled or executed.

The archive is read by the strict POSIX ustar reader below, not by `tarfile`: `tarfile` understands
pax, GNU long-name and sparse headers, and parsing those from unsigned bytes is where its denial of
service bugs live (CVE-2024-6232's quadratic pax parsing, unbounded recursion over chained GNU
long names, sparse maps many times the archive's size in memory). The one layout a bundle may have
needs none of them, so the reader parses fixed 512-byte headers at fixed offsets, refuses every other
header type, and does a bounded amount of work per byte.
"""

import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Collection, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge_packaging.manifest import (
    HARSH_EVENT_INPUTS,
    HARSH_EVENT_OUTPUT,
    MODEL_FILE,
    FileEntry,
    Manifest,
    ManifestError,
    OutputSpec,
    TensorSpec,
    load_manifest_json,
    parse_manifest,
    serialize_manifest,
)
from edge_packaging.signing import SIGNATURE_BYTES, SignatureInvalid, key_id, sign, verify_signature

MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
BUNDLE_MEMBERS: tuple[str, ...] = (MANIFEST_FILE, SIGNATURE_FILE, MODEL_FILE)
BUNDLE_SUFFIX = ".bundle.tar"
_MEMBER_MTIME = 0
_MEMBER_MODE = 0o644
_MiB = 1024 * 1024
_BLOCK_BYTES = 512
_RECORD_BYTES = 20 * _BLOCK_BYTES
"""The archive ends with two zero blocks, padded to a whole record (what `tarfile` writes)."""


REJECTION_CODES: tuple[str, ...] = (
    "unreadable",  # the path cannot be stat'ed or read, or is not a regular file
    "archive_too_large",  # by stat, before the archive is opened
    "not_tar",  # not an uncompressed tar (compressed, zip, empty, garbage, a bad first header)
    "corrupt_archive",  # a tar whose later headers or data are truncated or broken
    "absolute_path",  # a member path starting with / or \ or a drive letter
    "parent_path",  # a member path with a .. component
    "not_regular_file",  # link, directory, device, fifo, sparse, contiguous; pax or GNU extension header
    "duplicate_member",
    "unexpected_member",  # any name but manifest.json, manifest.sig, model.onnx
    "member_too_large",  # by header, before the member's data is read
    "trailing_data",  # anything but zero padding after the last member
    "unsigned",  # manifest.sig missing
    "missing_member",  # manifest.json or model.onnx missing
    "bad_signature",  # wrong length, or does not verify with any trusted key
    "untrusted_key",  # the manifest names a signing key that is not trusted
    "revoked_key",  # signed by a key whose id the device was told is revoked, trusted or not
    "bad_manifest",  # signed, but does not parse (manifest.ManifestError)
    "key_mismatch",  # signed by a trusted key other than the one the manifest names
    "files_mismatch",  # the manifest does not list exactly model.onnx
    "size_mismatch",
    "hash_mismatch",
    "non_canonical",  # a header field, or any padding, differs from the canonical layout
)
"""The `BundleRejected.code` values, roughly in the order the checks run."""


class BundleRejected(Exception):
    """A bundle that must not be used. `code` (one of `REJECTION_CODES`) names the check that failed,
    stable for machines; the message is a one-line, printable reason for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class BundleExists(FileExistsError):
    """A different bundle already exists at the path `build_bundle` would write."""


@dataclass(frozen=True)
class BundleLimits:
    """Sizes a verifier accepts, checked before the bytes are read (archive by stat, members by header)."""

    max_archive_bytes: int = 256 * _MiB
    max_model_bytes: int = 192 * _MiB
    max_manifest_bytes: int = 1 * _MiB

    def member_limit(self, name: str) -> int:
        return {
            MANIFEST_FILE: self.max_manifest_bytes,
            SIGNATURE_FILE: SIGNATURE_BYTES,
            MODEL_FILE: self.max_model_bytes,
        }[name]


def _show(name: str) -> str:
    """A member name safe to print on one line: escaped (newlines and all) and shortened."""
    text = ascii(name)
    return text if len(text) <= 80 else text[:77] + "..."


_MEMBER_KINDS = {
    b"1": "a hard link",
    b"2": "a symlink",
    b"3": "a character device",
    b"4": "a block device",
    b"5": "a directory",
    b"6": "a fifo",
    b"7": "a contiguous file",
    b"S": "a sparse file",
    b"x": "a pax extended header",
    b"g": "a pax global header",
    b"L": "a GNU long name header",
    b"K": "a GNU long link name header",
    b"\0": "an old-style (pre-POSIX) file entry",
}
_REGULAR_FILE = b"0"
_WINDOWS_DRIVE_RE = re.compile(r"[A-Za-z]:")
_CHECKSUM_FIELD_RE = re.compile(rb"[0-7]{6}\0 ")
_SIZE_FIELD_RE = re.compile(rb"[0-7]{11}\0")


@dataclass(frozen=True)
class _Header:
    """The fields of one 512-byte ustar header that the checks need, and the block itself."""

    name: str
    type_flag: bytes
    size: int
    block: bytes


def _octal_field(value: int, width: int) -> bytes:
    """A numeric ustar field as `tarfile` writes it: zero-padded octal digits, then one NUL."""
    return b"%0*o\0" % (width - 1, value)


def _ustar_header(name: str, size: int) -> bytes:
    """The canonical header of a member: ustar, regular file, mode 0644, uid/gid/mtime 0, no owner
    names, link or prefix; byte for byte what `tarfile` writes for the same fields, so bundles built
    before this writer existed keep their bytes and their sha256."""
    if size >= 8**11:
        raise ValueError(f"member {name} is too large for a ustar header ({size} bytes)")
    block = b"".join(
        (
            name.encode("ascii").ljust(100, b"\0"),
            _octal_field(_MEMBER_MODE, 8),
            _octal_field(0, 8),  # uid
            _octal_field(0, 8),  # gid
            _octal_field(size, 12),
            _octal_field(_MEMBER_MTIME, 12),
            b" " * 8,  # the checksum is summed with its own field as spaces
            _REGULAR_FILE,
            b"\0" * 100,  # link name
            b"ustar\x0000",  # magic and version
            b"\0" * (32 + 32 + 8 + 8 + 155),  # owner names, device numbers, prefix
        )
    ).ljust(_BLOCK_BYTES, b"\0")
    return block[:148] + b"%06o\0 " % sum(block) + block[156:]


def _parse_header(block: bytes) -> _Header | None:
    """The header in a 512-byte block, or None when its checksum or size field is malformed or wrong.

    Only the fixed fields are read, each a constant-size slice: no field can make parsing cost more
    than the block's 512 bytes. The name is the ustar prefix and name joined, as `tarfile` does."""
    # ustar offsets: name 0-100, size 124-136, checksum 148-156, type 156, prefix 345-500.
    checksum, size = block[148:156], block[124:136]
    if not _CHECKSUM_FIELD_RE.fullmatch(checksum) or not _SIZE_FIELD_RE.fullmatch(size):
        return None
    if int(checksum[:6], 8) != sum(block[:148]) + 8 * ord(" ") + sum(block[156:]):
        return None
    name = block[:100].split(b"\0", 1)[0]
    prefix = block[345:500].split(b"\0", 1)[0]
    path = prefix + b"/" + name if prefix else name
    return _Header(path.decode("utf-8", "surrogateescape"), block[156:157], int(size[:11], 8), block)


def _check_member_header(header: _Header, seen: Container[str], limits: BundleLimits) -> None:
    """Every check that needs only the member's header, in order of how alarming the finding is."""
    name = header.name
    if name.startswith(("/", "\\")) or _WINDOWS_DRIVE_RE.match(name):
        raise BundleRejected("absolute_path", f"member {_show(name)} has an absolute path")
    if ".." in re.split(r"[/\\]", name):
        raise BundleRejected("parent_path", f"member {_show(name)} has a '..' path component")
    if header.type_flag != _REGULAR_FILE:
        kind = _MEMBER_KINDS.get(header.type_flag, f"of type {header.type_flag.decode('latin-1')!a}")
        raise BundleRejected("not_regular_file", f"member {_show(name)} is {kind}, not a regular file")
    if name in seen:
        raise BundleRejected("duplicate_member", f"duplicate member {_show(name)}")
    if name not in BUNDLE_MEMBERS:
        expected = ", ".join(BUNDLE_MEMBERS)
        raise BundleRejected(
            "unexpected_member", f"unexpected member {_show(name)} (a bundle holds exactly {expected})"
        )
    limit = limits.member_limit(name)
    if header.size > limit:
        raise BundleRejected(
            "member_too_large", f"member {name} claims {header.size} bytes, over the limit of {limit}"
        )
    if header.block != _ustar_header(name, header.size):
        raise BundleRejected(
            "non_canonical",
            f"member {name} has a non-canonical header (a bundle's are ustar, mode 0644, owner 0, mtime 0)",
        )


def _read_members(data: bytes, limits: BundleLimits) -> dict[str, bytes]:
    """The members of a ustar archive, each header checked before its data is sliced out.

    At most four headers are ever parsed (a fourth with a sound name is a duplicate or unexpected),
    and everything after the end-of-archive block must be zero.
    """
    members: dict[str, bytes] = {}
    offset = 0
    while True:
        block = data[offset : offset + _BLOCK_BYTES]
        if len(block) == _BLOCK_BYTES and not any(block):
            break
        if offset == 0 and len(block) < _BLOCK_BYTES:
            reason = "empty file" if not block else "truncated header"
            raise BundleRejected("not_tar", f"not an uncompressed tar archive ({reason})")
        if len(block) < _BLOCK_BYTES:
            raise BundleRejected("corrupt_archive", "corrupt tar archive (unexpected end of data)")
        header = _parse_header(block)
        if header is None and offset == 0:
            raise BundleRejected("not_tar", "not an uncompressed tar archive (invalid header)")
        if header is None:
            raise BundleRejected("corrupt_archive", f"corrupt tar archive (invalid header at byte {offset})")
        _check_member_header(header, members, limits)
        start = offset + _BLOCK_BYTES
        if start + header.size > len(data):
            raise BundleRejected(
                "corrupt_archive", f"corrupt tar archive (unexpected end of data) in member {header.name}"
            )
        members[header.name] = data[start : start + header.size]
        offset = start + header.size + -header.size % _BLOCK_BYTES
    if any(data[offset:]):
        raise BundleRejected("trailing_data", "non-zero data after the last member")
    return members


@dataclass(frozen=True)
class BundleContents:
    """The members of a structurally sound archive, read into memory but not yet trusted."""

    path: Path
    archive_bytes: int
    archive_sha256: str
    members: Mapping[str, bytes]


def read_bundle_members(path: str | os.PathLike, limits: BundleLimits = BundleLimits()) -> BundleContents:
    """Read the members of a bundle archive after checking its structure; no signature check.

    Checks, in order: the archive's size by `stat` before it is opened; that it is an uncompressed
    ustar archive; each member's header (checksum, path, type, duplicates, expected name, size, then
    every other field against the canonical header) before its data is read; and that nothing but
    zero padding follows the last member. Missing members and member order are left to the caller.
    """
    path = Path(path)
    try:
        status = os.stat(path)
    except OSError as error:
        raise BundleRejected("unreadable", f"cannot read bundle: {error.strerror or error}") from None
    if not stat.S_ISREG(status.st_mode):
        raise BundleRejected("unreadable", "bundle path is not a regular file")
    if status.st_size > limits.max_archive_bytes:
        raise BundleRejected(
            "archive_too_large",
            f"archive is {status.st_size} bytes, over the limit of {limits.max_archive_bytes}",
        )
    try:
        with open(path, "rb") as handle:
            # Read one byte past the limit: a file that grew after the stat is caught here.
            data = handle.read(limits.max_archive_bytes + 1)
    except OSError as error:
        raise BundleRejected("unreadable", f"cannot read bundle: {error.strerror or error}") from None
    if len(data) > limits.max_archive_bytes:
        raise BundleRejected(
            "archive_too_large", f"archive is over the limit of {limits.max_archive_bytes} bytes"
        )

    if data.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd")):
        raise BundleRejected(
            "not_tar", "not an uncompressed tar archive (compressed data: gzip, bzip2, xz or zstd)"
        )
    members = _read_members(data, limits)
    return BundleContents(
        path=path, archive_bytes=len(data), archive_sha256=hashlib.sha256(data).hexdigest(), members=members
    )


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose structure, signature, manifest and file hashes all checked out."""

    path: Path
    manifest: Manifest
    manifest_bytes: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    model_bytes: bytes = field(repr=False)
    signing_key_id: str
    archive_bytes: int
    bundle_sha256: str

    def extract(self, parent_dir: str | os.PathLike | None = None) -> Path:
        """Write the verified members into a fresh temporary directory (under `parent_dir` if given)
        and return it, for runtimes that need files. Only the verified in-memory bytes are written,
        under their fixed names, never names taken from the archive."""
        directory = Path(tempfile.mkdtemp(prefix="fleetml-bundle-", dir=parent_dir))
        verified = {
            MANIFEST_FILE: self.manifest_bytes,
            SIGNATURE_FILE: self.signature,
            MODEL_FILE: self.model_bytes,
        }
        for name, data in verified.items():
            fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        return directory


TrustedKeys = Iterable[Ed25519PublicKey] | Mapping[str, Ed25519PublicKey]
"""Public keys a verifier trusts: a sequence, or a mapping alias -> key."""


def _trusted_keys(trusted_public_keys: TrustedKeys) -> dict[str, Ed25519PublicKey]:
    keys = trusted_public_keys
    if isinstance(keys, Mapping):
        keys = keys.values()
    by_id = {key_id(key): key for key in keys}
    if not by_id:
        raise ValueError("verify_bundle needs at least one trusted public key")
    return by_id


def _claimed_key_id(manifest_bytes: bytes) -> str | None:
    """The signing key id a manifest claims, read without trusting it (for the rejection reason only)."""
    try:
        claimed = load_manifest_json(manifest_bytes).get("signing_key_id")
    except (ManifestError, AttributeError):
        return None
    return claimed if isinstance(claimed, str) and re.fullmatch(r"[0-9a-f]{16}", claimed) else None


def verify_bundle(
    path: str | os.PathLike,
    trusted_public_keys: TrustedKeys,
    limits: BundleLimits = BundleLimits(),
    revoked_key_ids: Collection[str] = frozenset(),
) -> VerifiedBundle:
    """Check a bundle as a device does, or raise `BundleRejected` with a one-line reason.

    After the structural checks of `read_bundle_members`: all three members present; the signature
    verifies over the exact manifest bytes with one of `trusted_public_keys` (a sequence of keys, or a
    mapping alias -> key); the manifest parses strictly and names that key; it lists exactly the
    model file, whose size and sha256 match. A key whose id is in `revoked_key_ids` is refused even
    when it is trusted and its signature is valid: revocation outranks trust, so a leaked key is cut
    off with one list pushed to devices, before every device's trust set can be changed.
    """
    trusted = _trusted_keys(trusted_public_keys)
    contents = read_bundle_members(path, limits)
    members = contents.members
    if SIGNATURE_FILE not in members:
        raise BundleRejected("unsigned", f"unsigned bundle: {SIGNATURE_FILE} is missing")
    missing = [name for name in BUNDLE_MEMBERS if name not in members]
    if missing:
        raise BundleRejected("missing_member", f"missing member(s): {', '.join(missing)}")

    manifest_bytes, signature = members[MANIFEST_FILE], members[SIGNATURE_FILE]
    if len(signature) != SIGNATURE_BYTES:
        raise BundleRejected(
            "bad_signature",
            f"bad signature: {SIGNATURE_FILE} holds {len(signature)} bytes, expected {SIGNATURE_BYTES}",
        )
    signer = None
    for kid, public_key in trusted.items():
        try:
            verify_signature(public_key, signature, manifest_bytes)
        except SignatureInvalid:
            continue
        signer = kid
        break
    claimed = _claimed_key_id(manifest_bytes)
    for revoked in (signer, claimed):
        if revoked is not None and revoked in revoked_key_ids:
            raise BundleRejected("revoked_key", f"signed by revoked key {revoked}")
    if signer is None:
        trusted_ids = ", ".join(sorted(trusted))
        if claimed is not None and claimed not in trusted:
            raise BundleRejected(
                "untrusted_key", f"signed by untrusted key {claimed} (trusted: {trusted_ids})"
            )
        raise BundleRejected(
            "bad_signature",
            f"bad signature: {SIGNATURE_FILE} does not verify with any trusted key ({trusted_ids})",
        )

    try:
        manifest = parse_manifest(manifest_bytes)
    except ManifestError as error:
        raise BundleRejected("bad_manifest", f"manifest does not parse: {error}") from None
    if manifest.signing_key_id != signer:
        raise BundleRejected(
            "key_mismatch", f"manifest names signing key {manifest.signing_key_id} but is signed by {signer}"
        )
    if set(manifest.files) != {MODEL_FILE}:
        listed = ", ".join(_show(name) for name in manifest.files)
        raise BundleRejected(
            "files_mismatch", f"manifest lists files {listed}; a format-1 bundle holds exactly {MODEL_FILE}"
        )
    for name, entry in manifest.files.items():
        data = members[name]
        if len(data) != entry.size_bytes:
            raise BundleRejected(
                "size_mismatch", f"{name} is {len(data)} bytes, manifest says {entry.size_bytes}"
            )
        actual = hashlib.sha256(data).hexdigest()
        if actual != entry.sha256:
            raise BundleRejected(
                "hash_mismatch", f"{name} sha256 {actual} does not match manifest {entry.sha256}"
            )
    if hashlib.sha256(canonical_archive(members)).hexdigest() != contents.archive_sha256:
        raise BundleRejected(
            "non_canonical", "archive headers or padding differ from the canonical layout of its members"
        )
    return VerifiedBundle(
        path=contents.path,
        manifest=manifest,
        manifest_bytes=manifest_bytes,
        signature=signature,
        model_bytes=members[MODEL_FILE],
        signing_key_id=signer,
        archive_bytes=contents.archive_bytes,
        bundle_sha256=contents.archive_sha256,
    )


def bundle_file_name(model_name: str, model_version: str) -> str:
    """`<name>-<version>.bundle.tar`."""
    return f"{model_name}-{model_version}{BUNDLE_SUFFIX}"


def check_model_interface(model_bytes: bytes, inputs: Sequence[TensorSpec], output: OutputSpec) -> None:
    """Raise `ValueError` unless the ONNX model's inputs and output match the manifest's specs by name,
    element type and rank (with fixed dimensions equal), so a bundle never promises what its model
    does not take or give."""
    import onnx
    from onnx import helper

    try:
        model = onnx.load_model_from_string(model_bytes)
    except Exception as error:  # onnx raises DecodeError and friends from protobuf
        raise ValueError(f"model bytes are not an ONNX model ({type(error).__name__})") from None
    initializers = {init.name for init in model.graph.initializer}
    graph_inputs = {value.name: value for value in model.graph.input if value.name not in initializers}
    graph_outputs = {value.name: value for value in model.graph.output}

    def compare(spec_name: str, dtype: str, shape: Sequence, value: Any, role: str) -> None:
        tensor_type = value.type.tensor_type
        actual_dtype = "?"
        if tensor_type.elem_type:
            actual_dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name
        if actual_dtype != dtype:
            raise ValueError(f"{role} {spec_name}: model has {actual_dtype}, manifest says {dtype}")
        dims = tensor_type.shape.dim
        if len(dims) != len(shape):
            raise ValueError(f"{role} {spec_name}: model has rank {len(dims)}, manifest says {len(shape)}")
        for axis, (dim, expected) in enumerate(zip(dims, shape, strict=True)):
            if isinstance(expected, int) and dim.HasField("dim_value") and dim.dim_value != expected:
                raise ValueError(
                    f"{role} {spec_name}: dimension {axis} is {dim.dim_value}, manifest says {expected}"
                )

    if set(graph_inputs) != {spec.name for spec in inputs}:
        expected_inputs = sorted(spec.name for spec in inputs)
        raise ValueError(f"model inputs {sorted(graph_inputs)} != manifest inputs {expected_inputs}")
    for spec in inputs:
        compare(spec.name, spec.dtype, spec.shape, graph_inputs[spec.name], "input")
    if output.name not in graph_outputs:
        raise ValueError(f"model has no output {output.name!r} (outputs: {sorted(graph_outputs)})")
    compare(output.name, output.dtype, output.shape, graph_outputs[output.name], "output")


def bundle_archive_bytes(manifest: Manifest, model_bytes: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """The bytes of a bundle archive: fixed headers (mtime 0, uid/gid 0, no owner names, mode 0644,
    USTAR), members in `BUNDLE_MEMBERS` order. Same inputs, same bytes."""
    if key_id(private_key.public_key()) != manifest.signing_key_id:
        raise ValueError("the manifest's signing_key_id is not the id of private_key")
    if FileEntry.of(model_bytes) != manifest.files.get(MODEL_FILE) or set(manifest.files) != {MODEL_FILE}:
        raise ValueError(f"the manifest must list exactly {MODEL_FILE} with the model's sha256 and size")
    manifest_bytes = serialize_manifest(manifest)
    return canonical_archive(
        {
            MANIFEST_FILE: manifest_bytes,
            SIGNATURE_FILE: sign(private_key, manifest_bytes),
            MODEL_FILE: model_bytes,
        }
    )


def canonical_archive(contents: Mapping[str, bytes]) -> bytes:
    """The one tar layout of a bundle's members: fixed headers, `BUNDLE_MEMBERS` order, zero padding.

    Verification rebuilds it from the verified members and compares bytes, so a bundle's sha256
    identifies its content exactly: no header field or padding byte can change unnoticed.
    """
    parts: list[bytes] = []
    for name in BUNDLE_MEMBERS:
        data = contents[name]
        parts += (_ustar_header(name, len(data)), data, bytes(-len(data) % _BLOCK_BYTES))
    body = b"".join(parts) + bytes(2 * _BLOCK_BYTES)
    return body + bytes(-len(body) % _RECORD_BYTES)


def write_bundle_file(path: Path, data: bytes) -> Path:
    """Publish `data` at `path` atomically and never over a different file.

    The bytes go to a temp file in the same directory, are synced, then hard-linked into place (which
    fails if the path exists). An existing identical file is fine (building twice is idempotent); a
    different one raises `BundleExists`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp_name, path)
        except FileExistsError:
            if path.read_bytes() != data:
                raise BundleExists(f"a different bundle already exists at {path}") from None
    finally:
        os.unlink(tmp_name)
    return path


def build_manifest(
    model_bytes: bytes,
    *,
    model_name: str,
    model_version: str,
    signing_key_id: str,
    decision_thresholds: Mapping[str, float],
    inputs: Sequence[TensorSpec] = HARSH_EVENT_INPUTS,
    output: OutputSpec = HARSH_EVENT_OUTPUT,
    device_profiles: Mapping[str, Mapping[str, Any]] | None = None,
    lineage: Mapping[str, Any] | None = None,
    created_at: str,
) -> Manifest:
    """The manifest of a format-1 bundle around `model_bytes` (raises `ManifestError` if invalid).

    `lineage` always gains `model_sha256`. `created_at` (`manifest.utc_timestamp` form) is a required
    input, never the clock read here: the same inputs must give the same manifest, so a caller that
    wants reproducible bundles passes a time that belongs to the content (the platform passes the
    model's registration time).
    """
    entry = FileEntry.of(model_bytes)
    return Manifest(
        model_name=model_name,
        model_version=model_version,
        created_at=created_at,
        files={MODEL_FILE: entry},
        inputs=tuple(inputs),
        output=output,
        decision_thresholds=dict(decision_thresholds),
        signing_key_id=signing_key_id,
        device_profiles=dict(device_profiles or {}),
        lineage={**(lineage or {}), "model_sha256": entry.sha256},
    )


def bundle_bytes(
    model_bytes: bytes,
    *,
    model_name: str,
    model_version: str,
    decision_thresholds: Mapping[str, float],
    private_key: Ed25519PrivateKey,
    inputs: Sequence[TensorSpec] = HARSH_EVENT_INPUTS,
    output: OutputSpec = HARSH_EVENT_OUTPUT,
    device_profiles: Mapping[str, Mapping[str, Any]] | None = None,
    lineage: Mapping[str, Any] | None = None,
    created_at: str,
) -> bytes:
    """The signed archive of a bundle around `model_bytes`, for callers that store it themselves.

    The model's ONNX interface is checked against `inputs` and `output` first.
    """
    check_model_interface(model_bytes, inputs, output)
    manifest = build_manifest(
        model_bytes,
        model_name=model_name,
        model_version=model_version,
        signing_key_id=key_id(private_key.public_key()),
        decision_thresholds=decision_thresholds,
        inputs=inputs,
        output=output,
        device_profiles=device_profiles,
        lineage=lineage,
        created_at=created_at,
    )
    return bundle_archive_bytes(manifest, model_bytes, private_key)


def build_bundle(
    output_dir: str | os.PathLike,
    model_bytes: bytes,
    *,
    model_name: str,
    model_version: str,
    decision_thresholds: Mapping[str, float],
    private_key: Ed25519PrivateKey,
    inputs: Sequence[TensorSpec] = HARSH_EVENT_INPUTS,
    output: OutputSpec = HARSH_EVENT_OUTPUT,
    device_profiles: Mapping[str, Mapping[str, Any]] | None = None,
    lineage: Mapping[str, Any] | None = None,
    created_at: str,
) -> Path:
    """Build, sign and write `<output_dir>/<name>-<version>.bundle.tar` (see `bundle_bytes`).

    Writing is atomic and idempotent; a different bundle under the same name and version raises
    `BundleExists`.
    """
    data = bundle_bytes(
        model_bytes,
        model_name=model_name,
        model_version=model_version,
        decision_thresholds=decision_thresholds,
        private_key=private_key,
        inputs=inputs,
        output=output,
        device_profiles=device_profiles,
        lineage=lineage,
        created_at=created_at,
    )
    return write_bundle_file(Path(output_dir) / bundle_file_name(model_name, model_version), data)
