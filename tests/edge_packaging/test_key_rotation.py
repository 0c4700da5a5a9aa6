"""Devices trust a set of keys: a new key is rotated in while the old one is still trusted, the old one
is then retired, and a revoked key is refused even with a valid signature."""

import subprocess

import pytest
from bundle_fixtures import cli, make_bundle, seeded_key, write_public_key

from edge_packaging.bundle import BundleRejected, verify_bundle
from edge_packaging.signing import key_id

OLD, NEW = seeded_key(11), seeded_key(12)


@pytest.fixture
def bundles(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    return make_bundle(tmp_path / "old", OLD), make_bundle(tmp_path / "new", NEW)


def test_rotation_trusts_both_keys_during_the_switch_then_only_the_new_one(bundles):
    signed_old, signed_new = bundles
    during = [OLD.public_key(), NEW.public_key()]  # step 2: devices trust both before signing switches
    assert verify_bundle(signed_old, during).manifest.signing_key_id == key_id(OLD.public_key())
    assert verify_bundle(signed_new, during).manifest.signing_key_id == key_id(NEW.public_key())

    retired = [NEW.public_key()]  # step 4: the old key leaves the trust set
    assert verify_bundle(signed_new, retired)
    with pytest.raises(BundleRejected) as refused:
        verify_bundle(signed_old, retired)
    assert refused.value.code == "untrusted_key"


def test_a_revoked_key_is_refused_even_when_trusted_and_validly_signed(bundles):
    signed_old, signed_new = bundles
    trusted = [OLD.public_key(), NEW.public_key()]
    revoked = {key_id(OLD.public_key())}
    with pytest.raises(BundleRejected) as refused:
        verify_bundle(signed_old, trusted, revoked_key_ids=revoked)
    assert refused.value.code == "revoked_key" and key_id(OLD.public_key()) in str(refused.value)
    assert verify_bundle(signed_new, trusted, revoked_key_ids=revoked)  # other keys are unaffected


def test_the_cli_refuses_a_revoked_key_from_the_flag_or_the_environment(bundles, tmp_path):
    signed_old, _ = bundles
    pem = write_public_key(tmp_path / "old.pub.pem", OLD)

    def verify(*extra: str, **more_env: str) -> subprocess.CompletedProcess:
        return cli("verify", signed_old, "--public-key", pem, *extra, env_extra=more_env)

    assert verify().returncode == 0
    by_flag = verify("--revoked-key-id", key_id(OLD.public_key()))
    by_env = verify(FLEETML_REVOKED_KEY_IDS=f"0000000000000000,{key_id(OLD.public_key())}")
    for refused in (by_flag, by_env):
        assert refused.returncode == 1 and "revoked key" in refused.stderr and refused.stderr.count("\n") == 1
