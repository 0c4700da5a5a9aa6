"""The key that signs edge bundles, and the public keys devices trust, by alias.

Locally a development key pair is generated under `$FLEETML_HOME/keys` on first use and stands in for
every alias a device profile trusts; it is labelled `dev:<key id>` in metadata and logs so a dev
bundle is never mistaken for a release. In production the private key comes only from the
environment (`dg.EnvVar`), and so does the public key of the alias devices trust.
"""

from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class SigningKeyResource(dg.ConfigurableResource):
    """Exactly one of `dev_key_dir` (local) or `private_key_pem` (production) is set."""

    key_alias: str = "fleetml-edge-release"
    """The alias device profiles name in `trusted_key`."""
    dev_key_dir: str | None = None
    private_key_pem: str | None = None
    private_key_passphrase: str | None = None
    """Production: the passphrase of an encrypted `private_key_pem` (PKCS#8), from its own variable,
    so the key at rest in a secret store is useless without a second secret."""
    public_key_pem: str | None = None
    """Production: the published public key of `key_alias`; devices ship with it."""

    @property
    def is_dev_key(self) -> bool:
        return self.private_key_pem is None

    def _check(self) -> None:
        if (self.dev_key_dir is None) == (self.private_key_pem is None):
            raise ValueError("set exactly one of dev_key_dir (local) or private_key_pem (from the environment)")

    def private_key(self) -> "Ed25519PrivateKey":
        from edge_packaging.signing import ensure_dev_key_pair, load_private_key_pem

        self._check()
        if self.is_dev_key:
            return ensure_dev_key_pair(self.dev_key_dir).private_key()
        return load_private_key_pem(self.private_key_pem, self.private_key_passphrase)

    def trusted_public_key(self, alias: str) -> "Ed25519PublicKey":
        """The public key a device profile trusting `alias` holds."""
        from edge_packaging.signing import load_public_key_pem

        if alias != self.key_alias:
            raise KeyError(f"no public key is configured for trusted key alias {alias!r} (have {self.key_alias!r})")
        if self.is_dev_key:
            return self.private_key().public_key()
        if not self.public_key_pem:
            raise ValueError(f"the public key of {alias!r} is not configured")
        return load_public_key_pem(self.public_key_pem)

    def label(self) -> str:
        """`dev:<key id>` or `<alias>:<key id>`, for metadata and logs."""
        from edge_packaging.signing import key_id

        kid = key_id(self.private_key().public_key())
        return f"dev:{kid}" if self.is_dev_key else f"{self.key_alias}:{kid}"
