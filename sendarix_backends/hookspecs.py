"""The hooks a backend plugin implements.

A plugin is a module or object with functions named after these hooks and
decorated with ``sendarix_backends.hookimpl``. It registers through the
``sendarix`` entry-point group::

    [project.entry-points.sendarix]
    redis_queue = "my_package.sendarix_plugin"

Every hook is a synchronous factory that returns an object with async
methods (pluggy does not await). Each is ``firstresult``: plugins are asked
in reverse registration order, so a third-party plugin is asked before the
built-ins, and the first one that returns something other than ``None``
wins. Return ``None`` to let the next plugin decide, for example for a
database URL scheme you do not handle.
"""

from __future__ import annotations

import pluggy

from sendarix_backends.settings import Settings
from sendarix_core.ports import MessageQueue, MessageStore, Transport, WebhookSender

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("sendarix")
hookimpl = pluggy.HookimplMarker("sendarix")


@hookspec(firstresult=True)
def sendarix_storage(settings: Settings) -> MessageStore | None:
    """Return the message store for ``settings.database_url``.

    Called once per engine, before the queue. The engine calls ``open()`` on
    the result if it has one, and ``aclose()`` at shutdown. Commands that
    only read or change existing rows, such as ``sendarix keys list``, call
    ``open(create=False)``, which must raise ``StorageError`` in place of
    creating a missing database or schema.
    """


@hookspec(firstresult=True)
def sendarix_queue(settings: Settings, storage: MessageStore) -> MessageQueue | None:
    """Return the queue that hands due messages to workers.

    ``storage`` is the store chosen by ``sendarix_storage``. A backend that
    keeps the queue in the same database returns ``storage`` itself, so
    claims and state changes commit together.
    """


@hookspec(firstresult=True)
def sendarix_transport(settings: Settings) -> Transport | None:
    """Return the transport for ``settings.delivery_mode``.

    Messages sent with a test key never reach this transport: the engine
    hands them to the built-in sink.
    """


@hookspec(firstresult=True)
def sendarix_webhook_sender(settings: Settings) -> WebhookSender | None:
    """Return the client that posts signed events to webhook endpoints."""
