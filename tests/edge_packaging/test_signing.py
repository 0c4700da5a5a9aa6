import json
import stat

import pytest
from bundle_fixtures import seeded_key

from edge_packaging.signing import (
    DEV_KEY_INFO_FILE,
    KeyLoadError,
    SignatureInvalid,
    ensure_dev_key_pair,
    generate_private_key,
    key_id,
    load_private_key_from_env,
    load_private_key_pem,
    load_public_key_file,
    load_public_key_pem,
    private_key_to_pem,
    public_key_to_pem,
    sign,
    verify_signature,
)


def test_sign_and_verify_round_trip_and_any_change_fails():
    key = seeded_key(1)
    data = b'{"model_name":"harsh_event_model"}'
    signature = sign(key, data)
    assert len(signature) == 64
    assert sign(key, data) == signature, "Ed25519 is deterministic: reproducible bundles rely on it"
    verify_signature(key.public_key(), signature, data)
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify_signature(key.public_key(), signature, data + b" ")
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify_signature(seeded_key(2).public_key(), signature, data)
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    with pytest.raises(SignatureInvalid):
        verify_signature(key.public_key(), flipped, data)
    with pytest.raises(SignatureInvalid, match="expected 64"):
        verify_signature(key.public_key(), signature[:-1], data)


def test_key_id_is_16_hex_and_stable_across_pem_round_trip():
    key = seeded_key(1)
    kid = key_id(key.public_key())
    assert len(kid) == 16 and int(kid, 16) >= 0
    assert key_id(load_public_key_pem(public_key_to_pem(key.public_key()))) == kid
    assert key_id(seeded_key(2).public_key()) != kid


def test_private_key_pem_plain_and_encrypted():
    key = generate_private_key()
    plain = private_key_to_pem(key)
    assert plain.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert key_id(load_private_key_pem(plain).public_key()) == key_id(key.public_key())

    encrypted = private_key_to_pem(key, passphrase="correct horse")
    assert encrypted.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert key_id(load_private_key_pem(encrypted, "correct horse").public_key()) == key_id(key.public_key())
    with pytest.raises(KeyLoadError):
        load_private_key_pem(encrypted, "wrong")
    with pytest.raises(KeyLoadError):
        load_private_key_pem(encrypted)
    with pytest.raises(KeyLoadError):
        load_private_key_pem(b"not a key")


def test_public_key_loading_refuses_other_formats(tmp_path):
    with pytest.raises(KeyLoadError, match="public key"):
        load_public_key_pem(private_key_to_pem(seeded_key(1)))
    with pytest.raises(KeyLoadError, match="missing.pem"):
        load_public_key_file(tmp_path / "missing.pem")


def test_private_key_from_environment(monkeypatch):
    key = seeded_key(3)
    monkeypatch.delenv("FLEETML_SIGNING_KEY", raising=False)
    with pytest.raises(KeyLoadError, match="FLEETML_SIGNING_KEY is not set"):
        load_private_key_from_env()
    monkeypatch.setenv("FLEETML_SIGNING_KEY", private_key_to_pem(key).decode())
    assert key_id(load_private_key_from_env().public_key()) == key_id(key.public_key())

    monkeypatch.setenv("FLEETML_SIGNING_KEY", private_key_to_pem(key, "s3cret").decode())
    monkeypatch.setenv("FLEETML_SIGNING_KEY_PASSPHRASE", "s3cret")
    assert key_id(load_private_key_from_env().public_key()) == key_id(key.public_key())
    monkeypatch.setenv("OTHER_KEY", private_key_to_pem(key).decode())
    assert key_id(load_private_key_from_env("OTHER_KEY", passphrase_var="UNSET_VAR").public_key()) == key_id(
        key.public_key()
    )


def test_dev_key_pair_is_private_reused_and_labelled(tmp_path):
    keys_dir = tmp_path / "keys"
    first = ensure_dev_key_pair(keys_dir)
    assert first.created
    assert stat.S_IMODE(first.private_key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    assert first.label == f"dev:{first.key_id}"
    assert "dev" in first.private_key_path.name
    info = json.loads((keys_dir / DEV_KEY_INFO_FILE).read_text())
    assert info["label"] == "dev" and info["key_id"] == first.key_id and "DEVELOPMENT" in info["purpose"]
    assert key_id(first.public_key()) == first.key_id == key_id(first.private_key().public_key())
    assert not list(keys_dir.glob("*.tmp")), "no temp files left behind"

    private_pem = first.private_key_path.read_bytes()
    second = ensure_dev_key_pair(keys_dir)
    assert not second.created
    assert second.key_id == first.key_id
    assert second.private_key_path.read_bytes() == private_pem


def test_dev_key_pair_repairs_public_key_and_loose_mode(tmp_path):
    first = ensure_dev_key_pair(tmp_path)
    first.public_key_path.unlink()
    first.private_key_path.chmod(0o644)
    again = ensure_dev_key_pair(tmp_path)
    assert again.key_id == first.key_id
    assert key_id(load_public_key_file(again.public_key_path)) == first.key_id
    assert stat.S_IMODE(again.private_key_path.stat().st_mode) == 0o600
