"""DKIM signing of outgoing messages (RFC 6376, RFC 8463)."""

from sendarix_backends.dkim.canonicalization import (
    relaxed_body,
    relaxed_header,
    split_message,
)
from sendarix_backends.dkim.signer import (
    SIGNED_HEADERS,
    DkimAlgorithm,
    DkimSigner,
    SigningKey,
)

__all__ = [
    "SIGNED_HEADERS",
    "DkimAlgorithm",
    "DkimSigner",
    "SigningKey",
    "relaxed_body",
    "relaxed_header",
    "split_message",
]
