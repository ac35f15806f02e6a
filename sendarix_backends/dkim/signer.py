"""DKIM signatures with RSA-SHA256 (RFC 6376) and Ed25519-SHA256 (RFC 8463).

The hashing and the relaxed canonicalization run here; the public-key
operation runs in OpenSSL through ``cryptography``, which signs an
RSA 2048 message in well under a millisecond where dkimpy's pure-Python
RSA takes many (benchmarks/content.py measures both).
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from collections.abc import Sequence
from enum import StrEnum

import attrs
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from sendarix_backends.dkim.canonicalization import (
    relaxed_body,
    relaxed_header,
    split_message,
)

__all__ = ["SIGNED_HEADERS", "DkimAlgorithm", "DkimSigner", "SigningKey"]

# Fields a signature covers, in ``h=`` order: those RFC 6376 section 5.4.1
# recommends signing, Sender, and the MIME fields. Each is listed once more
# than the message has it, so once when it is absent. RFC 6376 section 5.4
# allows names of fields that do not exist, and with them a receiver rejects
# a copy with one more such field added, such as a second From or a Reply-To.
SIGNED_HEADERS = (
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-id",
    "list-help",
    "list-subscribe",
    "list-post",
    "list-owner",
    "list-archive",
    "list-unsubscribe",
    "list-unsubscribe-post",
)

_FOLD_WIDTH = 78
# Characters of the b= value per line, so " b=" and the first 72 make 75 octets.
_SIGNATURE_LINE = 72


class DkimAlgorithm(StrEnum):
    RSA_SHA256 = "rsa-sha256"
    ED25519_SHA256 = "ed25519-sha256"


@attrs.frozen
class SigningKey:
    """A private key and the selector its public key is published under."""

    selector: str
    private_key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey = attrs.field(repr=False)

    @property
    def algorithm(self) -> DkimAlgorithm:
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            return DkimAlgorithm.RSA_SHA256
        return DkimAlgorithm.ED25519_SHA256

    @classmethod
    def from_pem(cls, selector: str, pem: str) -> SigningKey:
        """Load an unencrypted PKCS#8 RSA or Ed25519 private key.

        Raises ``TypeError`` for any other key type.
        """
        key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
        if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
            raise TypeError(
                f"the DKIM key of selector {selector!r} is a "
                f"{type(key).__name__}; expected an RSA or Ed25519 key"
            )
        return cls(selector, key)

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            return self.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        # RFC 8463 section 3: PureEdDSA over the SHA-256 digest of the data.
        return self.private_key.sign(hashlib.sha256(data).digest())


class DkimSigner:
    """Signs messages of one domain with one signature per key."""

    def __init__(self, domain: str, keys: Sequence[SigningKey]) -> None:
        if not keys:
            raise ValueError(f"no DKIM key given for {domain!r}")
        self.domain = domain
        self.keys = tuple(keys)

    def sign(self, message: bytes, *, timestamp: int) -> bytes:
        """Return ``message`` with a DKIM-Signature field per key prepended.

        ``message`` is a complete message with CRLF line ends, as sent after
        DATA; ``timestamp`` (Unix seconds) becomes the ``t=`` tag.
        """
        fields, body = split_message(message)
        body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest())
        names = _header_names(fields)
        signed_fields = _canonical_fields(fields, names)

        signatures = []
        for key in self.keys:
            unsigned = _signature_field(
                key, self.domain, names, body_hash.decode("ascii"), timestamp
            )
            data = signed_fields + relaxed_header(unsigned)
            value = base64.b64encode(key.sign(data)).decode("ascii")
            signatures.append(unsigned + _fold_signature(value).encode("ascii"))
        return b"\r\n".join(signatures) + b"\r\n" + message


def _header_names(fields: Sequence[bytes]) -> list[str]:
    present = Counter(
        field.partition(b":")[0].strip().lower().decode("ascii", "replace")
        for field in fields
    )
    names: list[str] = []
    for name in SIGNED_HEADERS:
        names.extend([name] * (present[name] + 1))
    return names


def _canonical_fields(fields: Sequence[bytes], names: Sequence[str]) -> bytes:
    """Return the ``h=`` fields canonicalized, each taken bottom-up.

    A name listed more often than the message has that field contributes
    nothing for the extra entries (RFC 6376 section 5.4.2).
    """
    by_name: dict[str, list[bytes]] = {}
    for field in fields:
        name = field.partition(b":")[0].strip().lower().decode("ascii", "replace")
        by_name.setdefault(name, []).append(field)

    chunks = []
    for name in names:
        instances = by_name.get(name)
        if instances:
            chunks.append(relaxed_header(instances.pop()) + b"\r\n")
    return b"".join(chunks)


def _signature_field(
    key: SigningKey, domain: str, names: Sequence[str], body_hash: str, timestamp: int
) -> bytes:
    """Return the DKIM-Signature field up to and including the empty ``b=``.

    The field is folded between tags and after the colons of ``h=``, where
    RFC 6376 section 3.5 allows FWS, so its lines fit in 78 octets. Only a
    ``d=`` or ``s=`` value too long for one such line makes a longer line,
    and a DNS name of at most 253 octets keeps it far below 998.
    """
    # "h=from:", "from:", ..., "list-unsubscribe-post;"
    name_pieces = [f"{name}:" for name in names]
    name_pieces[-1] = f"{names[-1]};"
    name_pieces[0] = f"h={name_pieces[0]}"
    tags = [
        ["v=1;"],
        [f"a={key.algorithm};"],
        ["c=relaxed/relaxed;"],
        [f"d={domain};"],
        [f"s={key.selector};"],
        [f"t={timestamp};"],
        name_pieces,
        [f"bh={body_hash};"],
    ]

    lines = ["DKIM-Signature:"]
    for pieces in tags:
        # A space separates tags and nothing separates the names of h=. A
        # fold goes in between where the line would grow past 78 octets.
        for index, piece in enumerate(pieces):
            separator = "" if index else " "
            if len(lines[-1]) + len(separator) + len(piece) > _FOLD_WIDTH:
                lines.append(" " + piece)
            else:
                lines[-1] += separator + piece
    # b= starts its own line, so the first 72 characters of its value fit.
    lines.append(" b=")
    return "\r\n".join(lines).encode("ascii")


def _fold_signature(value: str) -> str:
    """Split the ``b=`` value over lines; whitespace in it is ignored."""
    chunks = [
        value[start : start + _SIGNATURE_LINE]
        for start in range(0, len(value), _SIGNATURE_LINE)
    ]
    return "\r\n ".join(chunks)
