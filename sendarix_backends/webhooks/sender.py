"""``HttpxWebhookSender``: posts webhook deliveries with httpx.

Each post resolves the URL's host, checks every address (see
``destinations``), and connects to the first checked address while sending
the original host in ``Host`` and in TLS SNI, so certificates are verified
against the name in the URL. Redirects are not followed, proxies from the
environment are not used, and one post takes at most ``timeout`` seconds in
total, connection included.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Mapping
from datetime import timedelta

import anyio
import httpx

from sendarix_backends.webhooks.destinations import (
    AddressResolver,
    Destination,
    DestinationError,
    parse_url,
)
from sendarix_core.ports import WebhookResponse

__all__ = ["RESPONSE_EXCERPT_BYTES", "HttpxWebhookSender"]

RESPONSE_EXCERPT_BYTES = 1024


class HttpxWebhookSender:
    """Implements ``WebhookSender`` from ``sendarix_core.ports``."""

    def __init__(self, resolver: AddressResolver, *, timeout: float = 10.0) -> None:
        self._resolver = resolver
        self._timeout = timeout
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )

    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes
    ) -> WebhookResponse:
        started = time.monotonic()
        try:
            with anyio.fail_after(self._timeout):
                return await self._post(url, headers, body, started)
        except TimeoutError:
            return _failure(started, f"timed out after {self._timeout:g} s")
        except DestinationError as exc:
            return _failure(started, f"destination rejected: {exc}")
        except httpx.HTTPError as exc:
            return _failure(started, f"{type(exc).__name__}: {exc}")

    async def _post(
        self, url: str, headers: Mapping[str, str], body: bytes, started: float
    ) -> WebhookResponse:
        destination = parse_url(url)
        addresses = await self._resolver.checked_addresses(destination)
        request = self._client.build_request(
            "POST",
            _address_url(destination, addresses[0]),
            headers={**headers, "host": _host_header(destination)},
            content=body,
            extensions={"sni_hostname": destination.host},
        )
        response = await self._client.send(request, stream=True)
        try:
            excerpt = await _read_excerpt(response)
        finally:
            await response.aclose()
        return WebhookResponse(
            status_code=response.status_code,
            body_excerpt=excerpt,
            elapsed=timedelta(seconds=time.monotonic() - started),
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def _address_url(
    destination: Destination,
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> str:
    host = f"[{address}]" if address.version == 6 else str(address)
    return f"{destination.scheme}://{host}:{destination.port}{destination.target}"


def _host_header(destination: Destination) -> str:
    host = destination.host
    if ":" in host:
        host = f"[{host}]"
    default = 443 if destination.scheme == "https" else 80
    return host if destination.port == default else f"{host}:{destination.port}"


async def _read_excerpt(response: httpx.Response) -> str:
    collected = bytearray()
    async for chunk in response.aiter_raw():
        collected.extend(chunk)
        if len(collected) >= RESPONSE_EXCERPT_BYTES:
            break
    return bytes(collected[:RESPONSE_EXCERPT_BYTES]).decode("utf-8", "replace")


def _failure(started: float, error: str) -> WebhookResponse:
    return WebhookResponse(
        status_code=None,
        body_excerpt="",
        elapsed=timedelta(seconds=time.monotonic() - started),
        error=error,
    )
