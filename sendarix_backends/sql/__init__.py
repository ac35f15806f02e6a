"""The built-in storage and queue backend on SQLite or PostgreSQL.

``SqlStore`` implements both ``MessageStore`` and ``MessageQueue`` from
``sendarix_core.ports``. ``upgrade`` brings a database schema up to date.
"""

# These modules define their tables on the shared metadata; importing them
# here makes every table known wherever the schema is used.
from sendarix_backends.sql import (  # noqa: F401
    domains,
    pacing,
    queue_admin,
    routes,
    secrets,
    templates,
)
from sendarix_backends.sql.migrate import current_revision, head_revision, upgrade
from sendarix_backends.sql.store import SqlStore

__all__ = ["SqlStore", "current_revision", "head_revision", "upgrade"]
