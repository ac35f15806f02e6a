"""SMTP delivery: MX resolution, pooled sessions and the transports.

``MxTransport`` delivers to the recipient domain's MX hosts,
``SmarthostTransport`` through one relay, and ``SinkTransport`` nowhere.
Each implements ``sendarix_core.ports.Transport`` and raises only
``TemporaryDeliveryError`` and ``PermanentDeliveryError``.
"""

from sendarix_backends.smtp.pool import PoolSettings
from sendarix_backends.smtp.resolver import MxHost, MxResolver
from sendarix_backends.smtp.sink import SinkTransport
from sendarix_backends.smtp.smarthost import SmarthostTransport
from sendarix_backends.smtp.tls import TlsMode
from sendarix_backends.smtp.transport import MxTransport

__all__ = [
    "MxHost",
    "MxResolver",
    "MxTransport",
    "PoolSettings",
    "SinkTransport",
    "SmarthostTransport",
    "TlsMode",
]
