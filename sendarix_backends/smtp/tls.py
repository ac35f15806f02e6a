"""TLS policy for outgoing SMTP connections."""

from __future__ import annotations

import ssl
from enum import StrEnum

__all__ = ["TlsMode", "unverified_context", "verifying_context"]


class TlsMode(StrEnum):
    """When a connection upgrades to TLS with STARTTLS (RFC 3207).

    ``none`` never upgrades. ``opportunistic`` upgrades when the server offers
    STARTTLS and otherwise delivers in clear text. ``required`` fails the
    connection when the server does not offer it. The ``ssl.SSLContext`` the
    transport uses decides whether the certificate is checked.
    """

    NONE = "none"
    OPPORTUNISTIC = "opportunistic"
    REQUIRED = "required"


def verifying_context() -> ssl.SSLContext:
    """Return a context that checks the certificate chain and host name
    against the system's trusted CAs."""
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH)


def unverified_context() -> ssl.SSLContext:
    """Return a context that encrypts without checking the certificate.

    Opportunistic TLS to MX hosts works this way (RFC 7435): most MX hosts
    present certificates that don't match their names, and the alternative
    to an unchecked certificate there is clear text, not a checked one. It
    protects against passive eavesdropping only.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
