"""``sendarix keys list`` and ``sendarix keys revoke``.

Both print plain text for operators: ``list`` a table with one key a line
(never a secret or a hash), ``revoke`` the id and the revocation time.
"""

from __future__ import annotations

import argparse
from datetime import datetime

from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from sendarix_core.keys import ApiKey
from sendarix_core.representation import format_time

__all__ = ["add_key_commands", "list_keys", "revoke_key"]

_COLUMNS = ("id", "name", "prefix", "environment", "status", "last used", "scopes")


def add_key_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """Add the ``list`` and ``revoke`` subcommands; return their parsers."""
    listing = commands.add_parser(
        "list", help="list every key, revoked and expired ones included"
    )
    revoke = commands.add_parser(
        "revoke", help="revoke a key; every server rejects it from then on"
    )
    revoke.add_argument("key_id", metavar="ID", help="the key's id, such as key_01…")
    return listing, revoke


async def list_keys(settings: Settings) -> None:
    # Reading keys from a wrong URL must not create an empty database there.
    async with Engine.from_settings(
        settings, workers=False, create_schema=False
    ) as engine:
        keys = await engine.list_api_keys()
        now = engine.clock.now()
    rows = [_COLUMNS, *(_row(key, now) for key in keys)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_COLUMNS))]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        print("  ".join(cells).rstrip())


async def revoke_key(settings: Settings, key_id: str) -> None:
    async with Engine.from_settings(
        settings, workers=False, create_schema=False
    ) as engine:
        key = await engine.revoke_api_key(key_id)
    print(f"{key.id} revoked at {format_time(key.revoked_at)}")


def _row(key: ApiKey, now: datetime) -> tuple[str, ...]:
    return (
        key.id,
        key.name,
        key.prefix + "…",
        str(key.environment),
        _status(key, now),
        format_time(key.last_used_at) or "never",
        ",".join(sorted(key.scopes)),
    )


def _status(key: ApiKey, now: datetime) -> str:
    if key.revoked_at is not None and key.revoked_at <= now:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"
