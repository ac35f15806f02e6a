"""Every reserved header is rejected and named in docs/api.md."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from sendarix_core.header_checks import RESERVED_HEADERS
from tests.http.conftest import message_body

pytestmark = pytest.mark.anyio

API_PAGE = Path(__file__).parents[2] / "docs" / "api.md"
RESERVED_PREFIXES = ("ARC-", "Content-", "Resent-", "X-Sendarix-")


def documented_headers() -> set[str]:
    """Return the header names in backquotes in the ``headers`` row, lowered."""
    row = next(
        line
        for line in API_PAGE.read_text(encoding="utf-8").splitlines()
        if line.startswith("| `headers` |")
    )
    return {name.lower() for name in re.findall(r"`([A-Za-z-]+\*?)`", row)}


def test_docs_name_every_reserved_header() -> None:
    documented = documented_headers()

    for name in sorted(RESERVED_HEADERS):
        assert name in documented, f"docs/api.md does not list {name}"
    for prefix in RESERVED_PREFIXES:
        assert f"{prefix.lower()}*" in documented, f"docs/api.md lacks {prefix}*"


@pytest.mark.parametrize(
    "name",
    [*sorted(RESERVED_HEADERS), *(f"{prefix}Test" for prefix in RESERVED_PREFIXES)],
)
async def test_reserved_header_rejected(client: httpx.AsyncClient, name: str) -> None:
    response = await client.post(
        "/v1/messages", json=message_body(headers={name: "ops@example.com"})
    )

    assert response.status_code == 422, response.text
    [error] = response.json()["error"]["errors"]
    assert error["field"] == f"headers.{name}"
    assert error["code"] == "reserved_header"
