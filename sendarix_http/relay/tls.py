"""The relay's TLS server context: the operator's certificate, or a
self-signed one made at start-up for development."""

from __future__ import annotations

import datetime
import logging
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sendarix_backends.settings import Settings
from sendarix_core.errors import ConfigurationError

__all__ = ["relay_tls_context", "self_signed_pem"]

logger = logging.getLogger("sendarix.relay")


def relay_tls_context(settings: Settings, hostname: str) -> ssl.SSLContext:
    """Return the server context of the relay.

    Without ``relay_tls_cert`` and ``relay_tls_key`` the certificate is
    self-signed for ``hostname`` and a WARNING is logged, because clients
    that verify certificates will reject it.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if settings.relay_tls_cert is not None and settings.relay_tls_key is not None:
        try:
            context.load_cert_chain(settings.relay_tls_cert, settings.relay_tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"cannot load the relay certificate {settings.relay_tls_cert!r} "
                f"with the key {settings.relay_tls_key!r}: {exc}; set "
                "SENDARIX_RELAY_TLS_CERT and SENDARIX_RELAY_TLS_KEY to PEM files"
            ) from exc
        return context

    logger.warning(
        "the SMTP relay uses a self-signed certificate; set "
        "SENDARIX_RELAY_TLS_CERT and SENDARIX_RELAY_TLS_KEY outside development",
        extra={"action": "relay_self_signed_certificate", "hostname": hostname},
    )
    certificate_pem, key_pem = self_signed_pem(hostname)
    # load_cert_chain reads only files.
    with tempfile.TemporaryDirectory() as directory:
        certificate_path = Path(directory, "certificate.pem")
        key_path = Path(directory, "key.pem")
        certificate_path.write_bytes(certificate_pem)
        key_path.write_bytes(key_pem)
        context.load_cert_chain(certificate_path, key_path)
    return context


def self_signed_pem(hostname: str, days: int = 365) -> tuple[bytes, bytes]:
    """Return a self-signed certificate for ``hostname`` and its key, in PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64])])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem
