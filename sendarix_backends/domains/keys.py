"""Generating DKIM key pairs: RSA 2048 and Ed25519 (RFC 8463)."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from sendarix_backends.dkim import DkimAlgorithm
from sendarix_backends.domains.model import DkimKey

__all__ = ["RSA_KEY_BITS", "generate_key"]

# RFC 8301 requires at least 1024 bits and recommends 2048; 2048-bit keys
# still fit in one TXT record that DNS providers accept.
RSA_KEY_BITS = 2048


def generate_key(selector: str, algorithm: DkimAlgorithm) -> DkimKey:
    """Generate a key pair and its ``p=`` value for the DKIM TXT record."""
    private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == DkimAlgorithm.RSA_SHA256:
        private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
        public = private.public_key().public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
    else:
        private = ed25519.Ed25519PrivateKey.generate()
        # RFC 8463 section 4: the bare 32-byte public key, not SPKI.
        public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return DkimKey(
        selector=selector,
        algorithm=algorithm,
        private_key_pem=pem.decode("ascii"),
        public_key=base64.b64encode(public).decode("ascii"),
    )
