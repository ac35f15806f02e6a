"""The library's own methods check their arguments as the HTTP API does."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from sendarix_backends.smtp.sink import SinkTransport
from sendarix_core.errors import ConfigurationError, ValidationError
from sendarix_core.keys import Environment, Scope
from sendarix_core.memory import MemoryStore
from sendarix_core.ports import MessageQuery, SuppressionQuery
from sendarix_core.states import MessageStatus
from sendarix_core.suppression import SuppressionReason
from tests.engine.conftest import message_body

pytestmark = pytest.mark.anyio


def fields(error: ValidationError) -> list[tuple[str, str]]:
    return [(e.field, e.code) for e in error.errors]


@pytest.mark.parametrize("recipient", ["", "not an address", "a@", None])
async def test_suppress_refuses_invalid_address(
    engine: Engine, recipient: object
) -> None:
    with pytest.raises(ValidationError) as raised:
        await engine.suppress(recipient)  # type: ignore[arg-type]
    assert [field for field, _ in fields(raised.value)] == ["recipient"]


async def test_suppress_takes_reason_by_name(engine: Engine) -> None:
    entry = await engine.suppress("Ada@Example.com", "manual")

    assert entry.recipient == "ada@example.com"
    assert entry.reason is SuppressionReason.MANUAL


async def test_suppress_refuses_unknown_reason(engine: Engine) -> None:
    with pytest.raises(ValidationError) as raised:
        await engine.suppress("ada@example.com", "angry")
    assert fields(raised.value) == [("reason", "invalid_reason")]


async def test_unsubscribe_refuses_invalid_address(engine: Engine) -> None:
    with pytest.raises(ValidationError) as raised:
        await engine.unsubscribe("not an address")
    assert [field for field, _ in fields(raised.value)] == ["recipient"]


async def test_api_key_takes_names(engine: Engine) -> None:
    secret, key = await engine.create_api_key(
        "ci", scopes={"admin"}, environment="test"
    )

    assert secret.startswith("sk_test_")
    assert key.scopes == frozenset({Scope.ADMIN})
    assert key.environment is Environment.TEST


async def test_api_key_refuses_bad_arguments(engine: Engine) -> None:
    with pytest.raises(ValidationError) as raised:
        await engine.create_api_key(
            "",
            scopes={"root"},
            sender_domains="acme.example",
            rate_limit=-1,
            expires_at=engine.clock.now() - timedelta(days=1),
        )

    assert fields(raised.value) == [
        ("name", "missing_field"),
        ("scopes.0", "invalid_value"),
        ("sender_domains", "invalid_type"),
        ("rate_limit", "invalid_value"),
        ("expires_at", "in_the_past"),
    ]


async def test_api_key_normalizes_domains(engine: Engine) -> None:
    _, key = await engine.create_api_key("web", sender_domains=["Acme.Example"])
    assert key.sender_domains == ("acme.example",)


async def test_api_key_drops_trailing_dot(engine: Engine) -> None:
    domains = ["Acme.Example.", "acme.example", " mail.acme.example. "]

    _, key = await engine.create_api_key("web", sender_domains=domains)

    assert key.sender_domains == ("acme.example", "mail.acme.example")


async def test_api_key_bad_domain_message(engine: Engine) -> None:
    with pytest.raises(ValidationError) as raised:
        await engine.create_api_key("web", sender_domains=["not a domain"])

    [error] = raised.value.errors
    assert error.field == "sender_domains.0"
    assert error.message.startswith("the domain 'not a domain' has the label")
    assert "postmaster" not in error.message


async def test_api_key_control_character_name(engine: Engine) -> None:
    with pytest.raises(ValidationError) as raised:
        await engine.create_api_key("a\tb")

    [error] = raised.value.errors
    assert error.message.startswith(
        'the name "a\\tb" contains a control character (U+0009);'
    )


async def test_send_error_lists_fields(engine: Engine) -> None:
    body = message_body("bob@", subject=5)

    with pytest.raises(ValidationError) as raised:
        await engine.send(body)

    lines = str(raised.value).splitlines()
    assert lines[0] == "2 fields are invalid:"
    assert "- recipient [missing_domain]: 'bob@' has no domain" in lines
    assert any(line.startswith("- subject [") for line in lines)
    assert raised.value.summary == "2 fields are invalid"
    assert [e.field for e in raised.value.errors] == ["recipient", "subject"]


def test_message_query_takes_status_name() -> None:
    assert MessageQuery(status="queued").status is MessageStatus.QUEUED


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"status": "sent"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 10**20}, "limit"),
        ({"limit": "10"}, "limit"),
        ({"created_after": datetime(2026, 1, 1)}, "created_after"),
    ],
)
def test_message_query_refuses_bad_values(
    arguments: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        MessageQuery(**arguments)  # type: ignore[arg-type]
    assert [error.field for error in raised.value.errors] == [field]


def test_suppression_query_reasons() -> None:
    query = SuppressionQuery(reasons={"manual"})
    assert query.reasons == frozenset({SuppressionReason.MANUAL})
    with pytest.raises(ValidationError):
        SuppressionQuery(reasons="manual")


async def test_webhook_event_types_string_refused(engine: Engine) -> None:
    assert engine.events is not None
    with pytest.raises(ValidationError) as raised:
        await engine.events.webhooks.create(
            "http://127.0.0.1:9/",
            event_types="message.delivered",
        )
    # The engine rejects loopback URLs, so the URL is listed as invalid too.
    assert fields(raised.value) == [("url", "invalid_url"), ("events", "invalid_type")]


async def test_send_raw_argument_types(engine: Engine) -> None:
    data = b"From: a@acme.example\r\nSubject: s\r\n\r\nbody\r\n"
    with pytest.raises(TypeError, match="as bytes, not str"):
        await engine.send_raw(
            data.decode(),  # type: ignore[arg-type]
            mail_from="a@acme.example",
            recipients=["b@example.com"],
        )
    with pytest.raises(TypeError, match="list of addresses"):
        await engine.send_raw(
            data,
            mail_from="a@acme.example",
            recipients="b@example.com",
        )


async def test_send_batch_needs_a_body(engine: Engine) -> None:
    with pytest.raises(TypeError, match="request body"):
        await engine.send_batch([{"recipient": "b@example.com"}])  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [float("inf"), float("nan"), "inf"])
def test_settings_refuse_infinite_seconds(value: object) -> None:
    with pytest.raises(ConfigurationError, match="seconds from"):
        Settings(lease_seconds=value)  # type: ignore[arg-type]


class OldPluginStore(MemoryStore):
    """A storage plugin whose open() predates its create argument."""

    async def open(self) -> None:
        return None


async def test_old_plugin_open_refused_without_create() -> None:
    store = OldPluginStore()
    engine = Engine(
        settings=Settings(delivery_mode="sink"),
        store=store,
        queue=store,
        transport=SinkTransport(),
        sink=SinkTransport(),
        workers=False,
        create_schema=False,
    )

    with pytest.raises(ConfigurationError, match="takes no create argument"):
        async with engine:
            pass


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda engine: engine.get_message(None), "message_id"),
        (lambda engine: engine.list_events(123), "message_id"),
        (lambda engine: engine.cancel(b"msg_1"), "message_id"),
        (lambda engine: engine.get_suppression(None), "recipient"),
        (lambda engine: engine.unsuppress(123), "recipient"),
        (lambda engine: engine.get_api_key(None), "key_id"),
        (lambda engine: engine.revoke_api_key(7), "key_id"),
        (lambda engine: engine.authenticate(b"sk_live_x"), "secret"),
    ],
)
async def test_non_string_id_refused(
    engine: Engine, call: Callable[[Engine], Awaitable[object]], field: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        await call(engine)
    assert fields(raised.value) == [(field, "invalid_type")]


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda engine: engine.list_messages(None), "takes a MessageQuery"),
        (lambda engine: engine.list_messages({}), "takes a MessageQuery, not dict"),
        (lambda engine: engine.list_suppressions(None), "takes a SuppressionQuery"),
    ],
)
async def test_wrong_query_type_refused(
    engine: Engine, call: Callable[[Engine], Awaitable[object]], expected: str
) -> None:
    with pytest.raises(TypeError, match=expected):
        await call(engine)
