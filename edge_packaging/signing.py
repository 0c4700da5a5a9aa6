"""Ed25519 signing of edge bundles: keys, key ids, detached signatures.

The platform signs the exact bytes of a bundle's `manifest.json`; a device verifies that signature
against the public keys it trusts before it reads anything else. Private keys reach the platform only
through the environment (`FLEETML_SIGNING_KEY`, PEM text, optionally encrypted with the passphrase in
`FLEETML_SIGNING_KEY_PASSPHRASE`). For local work, `ensure_dev_key_pair` creates a development key pair
on disk, labelled as such everywhere it shows.
"""

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNING_KEY_ENV = "FLEETML_SIGNING_KEY"
SIGNING_KEY_PASSPHRASE_ENV = "FLEETML_SIGNING_KEY_PASSPHRASE"
SIGNATURE_BYTES = 64
KEY_ID_HEX_CHARS = 16
DEV_KEY_LABEL = "dev"
DEV_PRIVATE_KEY_FILE = "dev-signing-key.pem"
DEV_PUBLIC_KEY_FILE = "dev-signing-key.pub.pem"
DEV_KEY_INFO_FILE = "dev-signing-key.json"


class SigningError(Exception):
    """Base of the signing errors; the message is a one-line reason."""


class KeyLoadError(SigningError):
    """A key that cannot be read: wrong format, wrong algorithm, wrong passphrase, missing variable."""


class SignatureInvalid(SigningError):
    """A detached signature that does not verify against the given public key."""


def generate_private_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def _passphrase_bytes(passphrase: str | bytes | None) -> bytes | None:
    if passphrase is None or passphrase == "" or passphrase == b"":
        return None
    return passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase


def private_key_to_pem(private_key: Ed25519PrivateKey, passphrase: str | bytes | None = None) -> bytes:
    """PKCS#8 PEM of `private_key`, encrypted with `passphrase` when one is given."""
    secret = _passphrase_bytes(passphrase)
    encryption = (
        serialization.BestAvailableEncryption(secret) if secret is not None else serialization.NoEncryption()
    )
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def public_key_to_pem(public_key: Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM of `public_key`."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key_pem(pem: str | bytes, passphrase: str | bytes | None = None) -> Ed25519PrivateKey:
    """Parse a PKCS#8 PEM Ed25519 private key; raise `KeyLoadError` with the reason otherwise."""
    data = pem.encode("utf-8") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=_passphrase_bytes(passphrase))
    except TypeError as error:
        # cryptography raises TypeError for "encrypted but no passphrase" and the reverse.
        raise KeyLoadError(f"private key: {error}") from None
    except ValueError as error:
        raise KeyLoadError(f"private key: not a readable PEM key or wrong passphrase ({error})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyLoadError(f"private key: expected Ed25519, got {type(key).__name__}")
    return key


def load_public_key_pem(pem: str | bytes) -> Ed25519PublicKey:
    """Parse a SubjectPublicKeyInfo PEM Ed25519 public key; raise `KeyLoadError` otherwise."""
    data = pem.encode("utf-8") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as error:
        raise KeyLoadError(f"public key: not a readable PEM public key ({error})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyLoadError(f"public key: expected Ed25519, got {type(key).__name__}")
    return key


def load_public_key_file(path: str | os.PathLike) -> Ed25519PublicKey:
    """Read a public key PEM file; a missing or unreadable file is a `KeyLoadError` naming the path."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise KeyLoadError(f"public key {path}: {error.strerror or error}") from None
    try:
        return load_public_key_pem(data)
    except KeyLoadError as error:
        raise KeyLoadError(f"{path}: {error}") from None


def load_private_key_file(
    path: str | os.PathLike, passphrase: str | bytes | None = None
) -> Ed25519PrivateKey:
    """Read a private key PEM file (used for the local dev key; production keys come from the env)."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise KeyLoadError(f"private key {path}: {error.strerror or error}") from None
    return load_private_key_pem(data, passphrase)


def load_private_key_from_env(
    var: str = SIGNING_KEY_ENV, passphrase_var: str = SIGNING_KEY_PASSPHRASE_ENV
) -> Ed25519PrivateKey:
    """The signing key held as PEM text in the environment variable `var`.

    The passphrase, if the PEM is encrypted, is read from `passphrase_var`. Secrets are never read
    from files or arguments in production, so neither ends up in shell history or a repository.
    """
    pem = os.environ.get(var)
    if not pem:
        raise KeyLoadError(f"environment variable {var} is not set (expected PEM text of an Ed25519 key)")
    return load_private_key_pem(pem, os.environ.get(passphrase_var))


def public_key_raw(public_key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short, stable name of a public key: the first 16 hex digits of sha256 of its raw bytes."""
    return hashlib.sha256(public_key_raw(public_key)).hexdigest()[:KEY_ID_HEX_CHARS]


def sign(private_key: Ed25519PrivateKey, data: bytes) -> bytes:
    """Detached Ed25519 signature (64 bytes) over `data`. Ed25519 is deterministic: same key and data,
    same signature, which keeps bundles reproducible."""
    return private_key.sign(data)


def verify_signature(public_key: Ed25519PublicKey, signature: bytes, data: bytes) -> None:
    """Return if `signature` is a valid signature of `data` by `public_key`; raise `SignatureInvalid`."""
    if len(signature) != SIGNATURE_BYTES:
        raise SignatureInvalid(f"signature holds {len(signature)} bytes, expected {SIGNATURE_BYTES}")
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        raise SignatureInvalid(f"signature does not verify with key {key_id(public_key)}") from None


@dataclass(frozen=True)
class DevKeyPair:
    """A development key pair on disk. Never trust its public key on a production device."""

    private_key_path: Path
    public_key_path: Path
    key_id: str
    created: bool
    """Whether this call generated the pair (False when an existing pair was reused)."""

    @property
    def label(self) -> str:
        """How the key shows in logs and reports: `dev:<key id>`."""
        return f"{DEV_KEY_LABEL}:{self.key_id}"

    def private_key(self) -> Ed25519PrivateKey:
        return load_private_key_file(self.private_key_path)

    def public_key(self) -> Ed25519PublicKey:
        return load_public_key_file(self.public_key_path)


def _write_atomically(path: Path, data: bytes, mode: int, replace: bool) -> bool:
    """Write `data` to `path` through a temp file in the same directory, created with `mode`.

    With `replace=False` the final step is a hard link, which fails if `path` exists, so a concurrent
    writer never clobbers a key another process already published; returns whether this call wrote.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp_name, path)
            return True
        try:
            os.link(tmp_name, path)
        except FileExistsError:
            return False
        return True
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def ensure_dev_key_pair(directory: str | os.PathLike) -> DevKeyPair:
    """The development signing key pair under `directory`, generated on first use and reused after.

    The private key is an unencrypted PKCS#8 PEM with mode 0600 in a 0700 directory; the public key
    and a JSON note labelling the pair as a DEV key sit beside it. The private key is the source of
    truth: the public key file is re-derived from it whenever it is missing or does not match.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_path = root / DEV_PRIVATE_KEY_FILE
    public_path = root / DEV_PUBLIC_KEY_FILE
    created = False
    if not private_path.exists():
        private_pem = private_key_to_pem(generate_private_key())
        created = _write_atomically(private_path, private_pem, 0o600, replace=False)
    elif private_path.stat().st_mode & 0o077:
        # A key readable by others is as good as leaked; a dev key is cheap, so tighten instead of failing.
        os.chmod(private_path, 0o600)
    private_key = load_private_key_file(private_path)
    public_pem = public_key_to_pem(private_key.public_key())
    if not public_path.exists() or public_path.read_bytes() != public_pem:
        _write_atomically(public_path, public_pem, 0o644, replace=True)
    kid = key_id(private_key.public_key())
    info = {
        "label": DEV_KEY_LABEL,
        "key_id": kid,
        "purpose": "DEVELOPMENT KEY generated locally; never trust it on production devices",
        "private_key": DEV_PRIVATE_KEY_FILE,
        "public_key": DEV_PUBLIC_KEY_FILE,
    }
    info_bytes = (json.dumps(info, sort_keys=True, indent=2) + "\n").encode("utf-8")
    info_path = root / DEV_KEY_INFO_FILE
    if not info_path.exists() or info_path.read_bytes() != info_bytes:
        _write_atomically(info_path, info_bytes, 0o644, replace=True)
    return DevKeyPair(private_key_path=private_path, public_key_path=public_path, key_id=kid, created=created)
