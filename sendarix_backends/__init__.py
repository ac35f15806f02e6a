"""Backends of Sendarix and the engine that composes them.

Storage, queue, transport and webhook backends plug in through the pluggy
hooks in ``sendarix_backends.hookspecs``; the built-in ones (SQLite,
PostgreSQL, SMTP) register the same way as third-party plugins.
"""

from sendarix_backends.engine import Engine, SendResult
from sendarix_backends.hookspecs import hookimpl
from sendarix_backends.plugins import get_plugin_manager
from sendarix_backends.settings import DeliveryMode, Settings, load_settings

__all__ = [
    "DeliveryMode",
    "Engine",
    "SendResult",
    "Settings",
    "get_plugin_manager",
    "hookimpl",
    "load_settings",
]
