"""The production signing key may be stored encrypted, with its passphrase in a second secret."""

import pytest

from edge_packaging.signing import (
    KeyLoadError,
    generate_private_key,
    key_id,
    private_key_to_pem,
    public_key_to_pem,
)
from resources.signing_keys import SigningKeyResource


def test_an_encrypted_production_key_signs_with_its_passphrase_and_not_without():
    key = generate_private_key()
    encrypted = private_key_to_pem(key, passphrase="correct horse").decode()
    public = public_key_to_pem(key.public_key()).decode()

    resource = SigningKeyResource(private_key_pem=encrypted, private_key_passphrase="correct horse", public_key_pem=public)
    assert key_id(resource.private_key().public_key()) == key_id(key.public_key())
    assert resource.label().endswith(key_id(key.public_key()))

    for wrong in (None, "battery staple"):
        with pytest.raises(KeyLoadError):
            SigningKeyResource(private_key_pem=encrypted, private_key_passphrase=wrong, public_key_pem=public).private_key()
