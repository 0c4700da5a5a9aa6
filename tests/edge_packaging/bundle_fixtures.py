"""Small, deterministic inputs for the bundle, profile and CLI tests: a tiny ONNX model with the
harsh-event interface, seeded keys, and a raw tar writer for hand-made (malicious) archives."""

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_packaging.bundle import build_bundle
from edge_packaging.signing import public_key_to_pem
from edge_packaging.telemetry_contract import HARSH_EVENT_CLASSES, IMU_CHANNELS, SAMPLES_PER_WINDOW

THRESHOLDS = {"harsh_brake": 0.5, "harsh_accel": 0.5, "harsh_turn": 0.5, "collision": 0.3, "benign": 0.0}
CREATED_AT = "2025-03-01T12:00:00Z"
LINEAGE = {
    "partitions": ["2025-02-01", "2025-02-02"],
    "code_version": "abc123",
    "dagster_run_id": "run-0001",
    "validation": {"macro_f1": 0.91, "gates_passed": True},
}


def seeded_key(seed: int) -> Ed25519PrivateKey:
    """An Ed25519 key derived from `seed`, so test keys (and signatures) are reproducible."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"fleetml-test-key-{seed}".encode()).digest())


REPO_ROOT = Path(__file__).resolve().parents[2]


def cli(*args, env_extra: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python -m edge_packaging ARGS` in a child process, without `$FLEETML_PUBLIC_KEY` unless given."""
    env = {k: v for k, v in os.environ.items() if k != "FLEETML_PUBLIC_KEY"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "edge_packaging", *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=timeout,
    )


def write_public_key(path: Path, key: Ed25519PrivateKey) -> Path:
    path.write_bytes(public_key_to_pem(key.public_key()))
    return path


def tiny_model(opset: int = 17, final_op: str = "Softmax", extra_opsets: dict[str, int] | None = None):
    """An ONNX model with the harsh-event interface: imu [N,6,200], speed_kph [N] -> probabilities [N,5].

    Channel means and the speed go through a fixed linear layer and `final_op` (Softmax, or e.g.
    Hardmax to use an operator no profile allows).
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    features = len(IMU_CHANNELS) + 1
    weights = rng.normal(0, 0.3, (features, len(HARSH_EVENT_CLASSES))).astype(np.float32)
    weights = numpy_helper.from_array(weights, "W")
    bias = numpy_helper.from_array(np.linspace(-0.5, 0.5, len(HARSH_EVENT_CLASSES), dtype=np.float32), "b")
    axes_time = numpy_helper.from_array(np.array([2], dtype=np.int64), "axes_time")
    axes_col = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes_col")
    scale = numpy_helper.from_array(np.array(0.01, dtype=np.float32), "speed_scale")
    if opset >= 18:
        mean = helper.make_node("ReduceMean", ["imu", "axes_time"], ["channel_mean"], keepdims=0)
    else:
        mean = helper.make_node("ReduceMean", ["imu"], ["channel_mean"], axes=[2], keepdims=0)
    nodes = [
        mean,
        helper.make_node("Mul", ["speed_kph", "speed_scale"], ["speed_scaled"]),
        helper.make_node("Unsqueeze", ["speed_scaled", "axes_col"], ["speed_col"]),
        helper.make_node("Concat", ["channel_mean", "speed_col"], ["features"], axis=1),
        helper.make_node("MatMul", ["features", "W"], ["logits_raw"]),
        helper.make_node("Add", ["logits_raw", "b"], ["logits"]),
        helper.make_node(final_op, ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_harsh_event",
        [
            helper.make_tensor_value_info(
                "imu", TensorProto.FLOAT, ["N", len(IMU_CHANNELS), SAMPLES_PER_WINDOW]
            ),
            helper.make_tensor_value_info("speed_kph", TensorProto.FLOAT, ["N"]),
        ],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", len(HARSH_EVENT_CLASSES)])],
        initializer=[weights, bias, axes_col, scale] + ([axes_time] if opset >= 18 else []),
    )
    opsets = [helper.make_opsetid("", opset)]
    opsets += [helper.make_opsetid(domain, version) for domain, version in (extra_opsets or {}).items()]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8, producer_name="fleetml-tests")


def tiny_model_bytes(**kwargs) -> bytes:
    return tiny_model(**kwargs).SerializeToString()


def make_bundle(
    directory: Path, key: Ed25519PrivateKey, model_bytes: bytes | None = None, **overrides
) -> Path:
    fields = dict(
        model_name="harsh_event_model",
        model_version="1.2.0",
        decision_thresholds=THRESHOLDS,
        device_profiles={"vg-r3-gateway": {"latency_p99_ms": 0.05, "model_bytes": 1000}},
        lineage=LINEAGE,
        created_at=CREATED_AT,
    )
    fields.update(overrides)
    model_bytes = model_bytes if model_bytes is not None else tiny_model_bytes()
    return build_bundle(directory, model_bytes, private_key=key, **fields)


def member(
    name: str, data: bytes = b"", type_: bytes = tarfile.REGTYPE, size: int | None = None, linkname: str = ""
):
    """A (TarInfo, data) pair for `write_tar`; `size` overrides the header's size field."""
    info = tarfile.TarInfo(name)
    info.type = type_
    info.size = len(data) if size is None else size
    info.linkname = linkname
    info.mode = 0o644
    return info, data


def members_of(path: Path) -> dict[str, bytes]:
    """The regular members of a (trusted, test-built) bundle."""
    with tarfile.open(path) as archive:
        return {info.name: archive.extractfile(info).read() for info in archive.getmembers()}


def write_tar(path: Path, entries, fmt: int = tarfile.USTAR_FORMAT) -> Path:
    """Write raw tar headers and data, without tarfile's checks: headers may claim sizes their data
    does not have (the data written is exactly what is given, padded to a 512-byte block). Plain
    ustar by default, so a name it cannot hold fails here instead of growing a pax header."""
    out = io.BytesIO()
    for info, data in entries:
        out.write(info.tobuf(format=fmt, encoding="utf-8", errors="surrogateescape"))
        if data:
            out.write(data)
            out.write(b"\0" * (-len(data) % tarfile.BLOCKSIZE))
    out.write(b"\0" * (2 * tarfile.BLOCKSIZE))
    path.write_bytes(out.getvalue())
    return path


def rebuild(source: Path, target: Path, *, replace=None, drop=(), add=(), order=None) -> Path:
    """Copy a bundle's members into a new raw tar, replacing, dropping or adding members."""
    contents = members_of(source)
    contents.update(replace or {})
    names = [n for n in (order or contents) if n not in drop]
    return write_tar(target, [member(n, contents[n]) for n in names] + list(add))


def resign(manifest_obj_or_bytes, key: Ed25519PrivateKey) -> dict[str, bytes]:
    """Replacement manifest.json and manifest.sig members: `manifest_obj_or_bytes` signed by `key`."""
    from edge_packaging.signing import sign

    data = manifest_obj_or_bytes
    if not isinstance(data, bytes):
        data = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return {"manifest.json": data, "manifest.sig": sign(key, data)}


def key_id_of(key: Ed25519PrivateKey) -> str:
    from edge_packaging.signing import key_id

    return key_id(key.public_key())


TAMPER_CASE_NAMES = [
    "changed_model_bytes",
    "changed_model_size",
    "changed_manifest",
    "bad_signature",
    "short_signature",
    "missing_signature",
    "untrusted_key",
    "missing_model",
    "missing_manifest",
    "extra_file",
    "dotdot_path",
    "absolute_path",
    "symlink",
    "hardlink",
    "device",
    "directory",
    "oversized_archive",
    "oversized_member",
    "duplicate_member",
    "not_a_tar",
    "gzipped_tar",
    "empty_file",
    "unparsable_manifest",
    "key_mismatch",
    "files_mismatch",
    "trailing_data",
    "truncated",
    "altered_padding",
    "reordered_members",
]


@dataclass(frozen=True)
class TamperCase:
    """A bundle that must be refused, with the check (`code`) and one-line `reason` expected."""

    path: Path
    code: str
    reason: str
    max_archive_bytes: int | None = None


def tamper_cases(good: Path, key: Ed25519PrivateKey, other_key: Ed25519PrivateKey, out: Path) -> dict:
    """Every way a bundle must be refused, by name. `good` is a valid bundle signed by `key`, the
    tampered copies are written under `out`; `other_key` is a key nobody trusts."""
    from edge_packaging.manifest import FileEntry

    original = members_of(good)
    model, signature = original["model.onnx"], original["manifest.sig"]
    manifest = json.loads(original["manifest.json"])
    trusted_id, other_id = key_id_of(key), key_id_of(other_key)
    only = {"drop": ["model.onnx"]}
    SYMLINK, HARDLINK = tarfile.SYMTYPE, tarfile.LNKTYPE

    def copy(name: str, **changes) -> Path:
        return rebuild(good, out / f"{name}.tar", **changes)

    def raw(name: str, data: bytes) -> Path:
        (out / f"{name}.tar").write_bytes(data)
        return out / f"{name}.tar"

    listed = dict(manifest, files={**manifest["files"], "extra.bin": FileEntry.of(b"x").to_json()})
    padded = bytearray(good.read_bytes())
    manifest_end = tarfile.BLOCKSIZE + len(original["manifest.json"])  # the first member is manifest.json
    assert manifest_end % tarfile.BLOCKSIZE, "the manifest must leave padding in its last block"
    padded[manifest_end] = ord("X")
    non_canonical = "archive headers or padding differ from the canonical layout of its members"
    cases = {
        "altered_padding": TamperCase(raw("padding", bytes(padded)), "non_canonical", non_canonical),
        "reordered_members": TamperCase(
            copy("reordered", order=["model.onnx", "manifest.sig", "manifest.json"]),
            "non_canonical",
            non_canonical,
        ),
        "changed_model_bytes": TamperCase(
            copy("flipped", replace={"model.onnx": bytes([model[0] ^ 1]) + model[1:]}),
            "hash_mismatch",
            "model.onnx sha256",
        ),
        "changed_model_size": TamperCase(
            copy("grown", replace={"model.onnx": model + b"\0"}),
            "size_mismatch",
            f"model.onnx is {len(model) + 1} bytes, manifest says {len(model)}",
        ),
        "changed_manifest": TamperCase(
            copy("manifest", replace={"manifest.json": original["manifest.json"].replace(b"1.2.", b"9.9.")}),
            "bad_signature",
            "bad signature: manifest.sig does not verify",
        ),
        "bad_signature": TamperCase(
            copy("badsig", replace={"manifest.sig": bytes([signature[0] ^ 1]) + signature[1:]}),
            "bad_signature",
            "bad signature: manifest.sig does not verify",
        ),
        "short_signature": TamperCase(
            copy("shortsig", replace={"manifest.sig": signature[:10]}),
            "bad_signature",
            "bad signature: manifest.sig holds 10 bytes, expected 64",
        ),
        "missing_signature": TamperCase(
            copy("nosig", drop=["manifest.sig"]), "unsigned", "unsigned bundle: manifest.sig is missing"
        ),
        "untrusted_key": TamperCase(
            copy("untrusted", replace=resign(dict(manifest, signing_key_id=other_id), other_key)),
            "untrusted_key",
            f"signed by untrusted key {other_id} (trusted: {trusted_id})",
        ),
        "missing_model": TamperCase(
            copy("nomodel", **only), "missing_member", "missing member(s): model.onnx"
        ),
        "missing_manifest": TamperCase(
            copy("nomanifest", drop=["manifest.json"]), "missing_member", "missing member(s): manifest.json"
        ),
        "extra_file": TamperCase(
            copy("extra", add=[member("README.txt", b"hi")]),
            "unexpected_member",
            "unexpected member 'README.txt'",
        ),
        "dotdot_path": TamperCase(
            copy("dotdot", add=[member("../model.onnx", model)]),
            "parent_path",
            "member '../model.onnx' has a '..' path component",
        ),
        "absolute_path": TamperCase(
            copy("absolute", add=[member("/etc/cron.d/model", b"x")]),
            "absolute_path",
            "member '/etc/cron.d/model' has an absolute path",
        ),
        "symlink": TamperCase(
            copy("symlink", **only, add=[member("model.onnx", type_=SYMLINK, linkname="/etc/passwd")]),
            "not_regular_file",
            "member 'model.onnx' is a symlink, not a regular file",
        ),
        "hardlink": TamperCase(
            copy("hardlink", **only, add=[member("model.onnx", type_=HARDLINK, linkname="manifest.json")]),
            "not_regular_file",
            "member 'model.onnx' is a hard link, not a regular file",
        ),
        "device": TamperCase(
            copy("device", **only, add=[member("model.onnx", type_=tarfile.CHRTYPE)]),
            "not_regular_file",
            "member 'model.onnx' is a character device, not a regular file",
        ),
        "directory": TamperCase(  # tar writes a directory's name with a trailing /, and so it is shown
            copy("directory", **only, add=[member("model.onnx", type_=tarfile.DIRTYPE)]),
            "not_regular_file",
            "member 'model.onnx/' is a directory, not a regular file",
        ),
        "oversized_archive": TamperCase(
            good,
            "archive_too_large",
            f"archive is {good.stat().st_size} bytes, over the limit of 4096",
            max_archive_bytes=4096,
        ),
        # The header claims 1 GiB and the archive holds 512 bytes of it: only the header can refuse it.
        "oversized_member": TamperCase(
            copy("huge", **only, add=[member("model.onnx", b"\0" * 512, size=1 << 30)]),
            "member_too_large",
            "member model.onnx claims 1073741824 bytes, over the limit of",
        ),
        "duplicate_member": TamperCase(
            copy("duplicate", add=[member("model.onnx", model)]),
            "duplicate_member",
            "duplicate member 'model.onnx'",
        ),
        "not_a_tar": TamperCase(
            raw("zip", b"PK\x03\x04 this is a zip file, not a tar " * 40),
            "not_tar",
            "not an uncompressed tar archive (invalid header)",
        ),
        "gzipped_tar": TamperCase(
            raw("gzipped", gzip.compress(good.read_bytes(), mtime=0)),
            "not_tar",
            "not an uncompressed tar archive (compressed data",
        ),
        "empty_file": TamperCase(
            raw("empty", b""), "not_tar", "not an uncompressed tar archive (empty file)"
        ),
        "unparsable_manifest": TamperCase(
            copy("garbage", replace=resign(b'{"model_name": 1', key)),
            "bad_manifest",
            "manifest does not parse: not JSON",
        ),
        "key_mismatch": TamperCase(
            copy("mismatch", replace=resign(dict(manifest, signing_key_id=other_id), key)),
            "key_mismatch",
            f"manifest names signing key {other_id} but is signed by {trusted_id}",
        ),
        "files_mismatch": TamperCase(
            copy("listed", replace=resign(listed, key)),
            "files_mismatch",
            "manifest lists files 'extra.bin', 'model.onnx'; a format-1 bundle holds exactly model.onnx",
        ),
        "trailing_data": TamperCase(
            raw("trailing", good.read_bytes() + b"\x01" * 512),
            "trailing_data",
            "non-zero data after the last member",
        ),
        "truncated": TamperCase(
            raw("truncated", good.read_bytes()[:1736]),
            "corrupt_archive",
            "corrupt tar archive (unexpected end of data)",
        ),
    }
    assert sorted(cases) == sorted(TAMPER_CASE_NAMES)
    return cases
