"""Fixtures for HTTP tests: the real ASGI app over an engine on SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from sendarix_core.clock import ManualClock
from sendarix_core.keys import Scope
from sendarix_http.app import create_app
from tests.core.factories import T0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
async def engine(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Engine]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'sendarix.db'}", delivery_mode="sink"
    )
    async with Engine.from_settings(settings, clock=clock, workers=False) as opened:
        yield opened


@pytest.fixture
async def api_key(engine: Engine) -> str:
    secret, _ = await engine.create_api_key("tests")
    return secret


@pytest.fixture
async def client(engine: Engine, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://sendarix.test",
        headers={"Authorization": f"Bearer {api_key}"},
    ) as opened:
        yield opened


async def key_with_scopes(engine: Engine, *scopes: Scope) -> str:
    secret, _ = await engine.create_api_key("limited", scopes=frozenset(scopes))
    return secret


def message_body(**fields: object) -> dict[str, object]:
    body: dict[str, object] = {
        "recipient": "user@example.com",
        "from": "Acme <no-reply@acme.example>",
        "subject": "Your verification code",
        "text": "Your code is 847291.",
    }
    body.update(fields)
    return body
