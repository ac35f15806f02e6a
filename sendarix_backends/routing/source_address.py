"""The check that a routing rule's ``source_address`` belongs to this machine.

``sendarix_core.route_requests`` only parses the address, because the core
does no I/O. Binding a socket to the address with port 0 succeeds only for
an address assigned to one of this machine's interfaces (on Linux, also for
every address of 127.0.0.0/8). The socket is closed at once, and nothing is
sent.
"""

from __future__ import annotations

import ipaddress
import socket

from sendarix_core.checks import json_excerpt
from sendarix_core.errors import FieldError, ValidationError

__all__ = ["check_source_address"]


def check_source_address(address: str, field: str = "action.source_address") -> None:
    """Raise ``ValidationError`` unless a socket can bind ``address``.

    NOTE: this checks the machine that handles the request only. Every node
    that shares the database reads the rule, so each of them needs the
    address too.
    """
    family = socket.AF_INET
    if ipaddress.ip_address(address).version == 6:
        family = socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((address, 0))
    except OSError as exc:
        raise ValidationError(
            [
                FieldError(
                    field,
                    "address_not_local",
                    f"{json_excerpt(address)} is not an address of this machine "
                    f"(binding it failed: {exc.strerror}); use an address of one "
                    "of its network interfaces, or leave source_address out to "
                    "let the system choose",
                )
            ]
        ) from exc
