"""``Engine.send_raw``: finished messages into the pipeline, on SQLite and
PostgreSQL, delivered to a real SMTP server through MX lookup."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import attrs
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from sendarix_backends.submission_raw import (
    RawBatch,
    prepare_raw_batch,
    submit_raw_batch,
)
from sendarix_core.errors import IdempotencyConflictError, ValidationError
from sendarix_core.keys import Environment
from sendarix_core.ports import MessageQuery, Submission, SubmitOutcome
from sendarix_core.states import EventType, MessageStatus, Priority
from tests.conftest import DOMAIN
from tests.core.factories import T0
from tests.engine.conftest import database_url, postgresql_schema
from tests.relay.conftest import RECIPIENT, SENDER, create_key, message_bytes
from tests.support.dns_server import DnsServer
from tests.support.smtp_server import SmtpServer

__all__ = ["database_url", "postgresql_schema"]

pytestmark = pytest.mark.anyio

OTHER = f"carol@{DOMAIN}"
FINISHED = "Message-ID: <m1@acme.example>\r\nDate: Fri, 04 Dec 2026 16:51:23 +0000\r\n"


@pytest.fixture
def relay_settings(
    database_url: str, dns_server: DnsServer, smtp_server: SmtpServer
) -> Settings:
    return Settings(
        database_url=database_url,
        dns_nameservers=(("127.0.0.1", dns_server.port),),
        destination_port=smtp_server.port,
        helo_name="sendarix.test",
        smtp_timeout=5,
    )


@pytest.fixture
async def engine(relay_settings: Settings) -> AsyncIterator[Engine]:
    async with Engine.from_settings(relay_settings, workers=False) as opened:
        yield opened


async def stored_count(engine: Engine) -> int:
    return len((await engine.list_messages(MessageQuery(limit=100))).items)


async def test_send_raw_one_message_per_recipient(engine: Engine) -> None:
    data = message_bytes(headers=FINISHED)
    results = await engine.send_raw(
        data, mail_from=SENDER, recipients=[RECIPIENT, OTHER]
    )

    assert len({result.message_id for result in results}) == 2
    first = await engine.get_message(results[0].message_id)
    second = await engine.get_message(results[1].message_id)
    assert first.recipient.email == RECIPIENT
    assert second.recipient.email == OTHER
    assert first.content.raw == data
    assert second.content.raw == data
    assert first.status == MessageStatus.QUEUED
    events = await engine.list_events(first.id)
    assert [event.type for event in events] == [EventType.QUEUED]


async def test_send_raw_display_fields(engine: Engine) -> None:
    data = message_bytes(headers="Message-ID: <m1@acme.example>\r\n")
    [result] = await engine.send_raw(data, mail_from=SENDER, recipients=[RECIPIENT])
    message = await engine.get_message(result.message_id)
    assert str(message.sender) == f"Ada <{SENDER}>"
    assert message.content.subject == "Your verification code"
    assert message.message_id_header == "<m1@acme.example>"


async def test_send_raw_message_id_comment(engine: Engine) -> None:
    header = b"Message-ID: <x.y@acme.test> (c)\r\n"
    data = message_bytes(headers=header.decode())

    [result] = await engine.send_raw(data, mail_from=SENDER, recipients=[RECIPIENT])

    message = await engine.get_message(result.message_id)
    assert message.message_id_header == "<x.y@acme.test>"
    assert header in (message.content.raw or b"")


async def test_send_raw_sender_is_envelope(engine: Engine) -> None:
    data = message_bytes(sender="Acme <no-reply@acme.example>")
    [result] = await engine.send_raw(
        data, mail_from="bounces@acme.example", recipients=[RECIPIENT]
    )
    message = await engine.get_message(result.message_id)
    assert str(message.sender) == "bounces@acme.example"


async def test_send_raw_adds_message_id_and_date(engine: Engine) -> None:
    data = message_bytes()
    [result] = await engine.send_raw(data, mail_from=SENDER, recipients=[RECIPIENT])
    message = await engine.get_message(result.message_id)
    raw = message.content.raw or b""
    header = f"<{message.id}@acme.example>"
    assert message.message_id_header == header
    assert raw.startswith(f"Message-ID: {header}\r\nDate: ".encode())
    assert raw.endswith(data)


async def test_send_raw_keeps_date(engine: Engine) -> None:
    data = message_bytes(headers=FINISHED)
    [result] = await engine.send_raw(data, mail_from=SENDER, recipients=[RECIPIENT])
    message = await engine.get_message(result.message_id)
    assert (message.content.raw or b"").count(b"Date:") == 1


async def test_send_raw_control_headers(engine: Engine) -> None:
    headers = (
        "X-Sendarix-Tags: otp\r\n"
        "X-Sendarix-Metadata-user_id: 42\r\n"
        "X-Sendarix-Priority: high\r\n"
        "Bcc: hidden@example.test\r\n"
    )
    [result] = await engine.send_raw(
        message_bytes(headers=headers), mail_from=SENDER, recipients=[RECIPIENT]
    )
    message = await engine.get_message(result.message_id)
    assert message.tags == ("otp",)
    assert message.metadata == {"user_id": "42"}
    assert message.priority == Priority.HIGH
    assert b"X-Sendarix" not in (message.content.raw or b"")
    assert b"hidden@" not in (message.content.raw or b"")


async def test_send_raw_rejects_invalid_recipient(engine: Engine) -> None:
    with pytest.raises(ValidationError) as caught:
        await engine.send_raw(message_bytes(), mail_from=SENDER, recipients=["bob@"])
    assert [item.field for item in caught.value.errors] == ["recipients.0"]
    assert await stored_count(engine) == 0


async def test_send_raw_checks_envelope_domain(engine: Engine) -> None:
    key = await engine.authenticate(
        await create_key(engine, sender_domains=("acme.example",))
    )
    with pytest.raises(ValidationError) as caught:
        await engine.send_raw(
            message_bytes(),
            mail_from="ada@evil.example",
            recipients=[RECIPIENT],
            api_key=key,
        )
    assert caught.value.errors[0].code == "sender_domain_not_allowed"


async def test_send_raw_checks_from_header_domain(engine: Engine) -> None:
    key = await engine.authenticate(
        await create_key(engine, sender_domains=("acme.example",))
    )
    with pytest.raises(ValidationError) as caught:
        await engine.send_raw(
            message_bytes(sender="ceo@evil.example"),
            mail_from=SENDER,
            recipients=[RECIPIENT],
            api_key=key,
        )
    assert caught.value.errors[0].code == "sender_domain_not_allowed"
    assert await stored_count(engine) == 0


async def test_send_raw_verifies_sender_domain(relay_settings: Settings) -> None:
    settings = attrs.evolve(relay_settings, sender_verification="required")
    async with Engine.from_settings(settings, workers=False) as engine:
        with pytest.raises(ValidationError) as caught:
            await engine.send_raw(
                message_bytes(), mail_from=SENDER, recipients=[RECIPIENT]
            )
        assert await stored_count(engine) == 0
    assert [item.code for item in caught.value.errors] == ["sender_not_verified"]


async def test_send_raw_names_every_unverified_domain(
    relay_settings: Settings,
) -> None:
    settings = attrs.evolve(relay_settings, sender_verification="required")
    data = message_bytes(sender="a@evil.example", headers="Sender: s@other.example\r\n")
    async with Engine.from_settings(settings, workers=False) as engine:
        with pytest.raises(ValidationError) as caught:
            await engine.send_raw(
                data, mail_from="m@third.example", recipients=[RECIPIENT]
            )

    messages = " ".join(item.message for item in caught.value.errors)
    for domain in ("evil.example", "other.example", "third.example"):
        assert repr(domain) in messages


async def test_send_raw_idempotent_replay(engine: Engine) -> None:
    data = message_bytes(headers="Idempotency-Key: order-7\r\n")
    first = await engine.send_raw(data, mail_from=SENDER, recipients=[RECIPIENT, OTHER])
    again = await engine.send_raw(data, mail_from=SENDER, recipients=[OTHER, RECIPIENT])

    assert [result.message_id for result in again] == [
        first[1].message_id,
        first[0].message_id,
    ]
    assert all(result.replayed for result in again)
    assert await stored_count(engine) == 2


async def test_send_raw_idempotency_conflict_bytes(engine: Engine) -> None:
    headers = "Idempotency-Key: order-7\r\n"
    await engine.send_raw(
        message_bytes(headers=headers), mail_from=SENDER, recipients=[RECIPIENT]
    )
    with pytest.raises(IdempotencyConflictError):
        await engine.send_raw(
            message_bytes(headers=headers, body="Another body\r\n"),
            mail_from=SENDER,
            recipients=[RECIPIENT],
        )
    assert await stored_count(engine) == 1


async def test_send_raw_idempotency_conflict_recipients(engine: Engine) -> None:
    data = message_bytes(headers="X-Sendarix-Idempotency-Key: order-7\r\n")
    await engine.send_raw(data, mail_from=SENDER, recipients=[OTHER])
    with pytest.raises(IdempotencyConflictError):
        await engine.send_raw(data, mail_from=SENDER, recipients=[RECIPIENT, OTHER])
    assert await stored_count(engine) == 1


async def test_send_raw_completes_interrupted_batch(engine: Engine) -> None:
    data = message_bytes(headers="Idempotency-Key: order-7\r\n")
    recipients = [RECIPIENT, OTHER]
    batch = prepare_raw_batch(
        data,
        mail_from=SENDER,
        recipients=recipients,
        now=engine.clock.now(),
        new_id=engine.new_id,
        api_key=None,
        idempotency_owner="library",
    )
    # Only the anchor was committed before the process died.
    await engine.store.create_messages(
        [batch.submissions[batch.anchor]], engine.clock.now()
    )

    results = await engine.send_raw(data, mail_from=SENDER, recipients=recipients)
    assert [result.replayed for result in results] == [True, False]
    assert results[0].message_id == batch.submissions[0].transition.after.id
    assert await stored_count(engine) == 2


async def test_send_raw_delivers_bytes(engine: Engine, smtp_server: SmtpServer) -> None:
    data = message_bytes(headers=FINISHED)
    [result] = await engine.send_raw(
        data, mail_from="bounces@acme.example", recipients=[RECIPIENT]
    )
    await engine.deliver_due()

    [received] = smtp_server.wait_for_messages(1)
    assert received.data == data
    assert received.mail_from == "bounces@acme.example"
    assert received.rcpt_tos == (RECIPIENT,)
    message = await engine.get_message(result.message_id)
    assert message.status == MessageStatus.DELIVERED


async def test_send_raw_test_key_uses_sink(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    key = await engine.authenticate(
        await create_key(engine, environment=Environment.TEST)
    )
    [result] = await engine.send_raw(
        message_bytes(), mail_from=SENDER, recipients=[RECIPIENT], api_key=key
    )
    await engine.deliver_due()

    message = await engine.get_message(result.message_id)
    assert message.test_mode is True
    assert message.status == MessageStatus.DELIVERED
    assert smtp_server.messages == []


async def test_send_raw_suppressed_recipient(engine: Engine) -> None:
    await engine.suppress(RECIPIENT)
    [result] = await engine.send_raw(
        message_bytes(), mail_from=SENDER, recipients=[RECIPIENT]
    )
    await engine.deliver_due()
    message = await engine.get_message(result.message_id)
    assert message.status == MessageStatus.SUPPRESSED


class RecordingStore:
    """Records how ``submit_raw_batch`` groups submissions into commits."""

    def __init__(self) -> None:
        self.commits: list[list[str]] = []

    async def submit_one(self, submission: Submission) -> SubmitOutcome:
        self.commits.append([submission.transition.after.recipient.email])
        return SubmitOutcome(message=submission.transition.after)

    async def submit_all(
        self, submissions: Sequence[Submission]
    ) -> list[SubmitOutcome]:
        self.commits.append([s.transition.after.recipient.email for s in submissions])
        return [SubmitOutcome(message=s.transition.after) for s in submissions]


def raw_batch(headers: str = "") -> RawBatch:
    ids = iter(range(100))
    return prepare_raw_batch(
        message_bytes(headers=headers),
        mail_from=SENDER,
        recipients=[OTHER, RECIPIENT, f"zed@{DOMAIN}"],
        now=T0,
        new_id=lambda prefix: f"{prefix}_{next(ids)}",
        api_key=None,
        idempotency_owner="library",
    )


async def test_submit_batch_one_commit() -> None:
    store = RecordingStore()
    outcomes = await submit_raw_batch(
        raw_batch(), submit_one=store.submit_one, submit_all=store.submit_all
    )
    assert store.commits == [[OTHER, RECIPIENT, f"zed@{DOMAIN}"]]
    assert len(outcomes) == 3


async def test_submit_batch_with_key_one_commit() -> None:
    store = RecordingStore()
    outcomes = await submit_raw_batch(
        raw_batch("Idempotency-Key: k1\r\n"),
        submit_one=store.submit_one,
        submit_all=store.submit_all,
    )
    assert store.commits == [[OTHER, RECIPIENT, f"zed@{DOMAIN}"]]
    recipients = [
        outcome.message.recipient.email for outcome in outcomes if outcome.message
    ]
    assert recipients == [OTHER, RECIPIENT, f"zed@{DOMAIN}"]


def test_raw_batch_record_keys() -> None:
    batch = raw_batch("Idempotency-Key: k1\r\n")

    keys = [
        submission.idempotency.key
        for submission in batch.submissions
        if submission.idempotency is not None
    ]
    # bob@ sorts first, so its submission stores the key itself.
    assert keys == [f"smtp k1 {OTHER}", "k1", f"smtp k1 zed@{DOMAIN}"]


async def test_send_raw_key_batch_no_collision(engine: Engine) -> None:
    item = {"from": SENDER, "recipient": OTHER, "subject": "s", "text": "t"}
    body = {"messages": [item]}
    await engine.send_batch(body, idempotency_key=OTHER)
    data = message_bytes(headers="Idempotency-Key: batch\r\n")

    results = await engine.send_raw(
        data, mail_from=SENDER, recipients=[RECIPIENT, OTHER]
    )

    assert [result.replayed for result in results] == [False, False]
    assert await stored_count(engine) == 3


async def test_send_raw_conflict_stores_nothing(engine: Engine) -> None:
    headers = "Idempotency-Key: order-7\r\n"
    earlier = prepare_raw_batch(
        message_bytes(headers=headers, body="Earlier body\r\n"),
        mail_from=SENDER,
        recipients=[RECIPIENT, OTHER],
        now=engine.clock.now(),
        new_id=engine.new_id,
        api_key=None,
        idempotency_owner="library",
    )
    # Only the record of the second recipient exists, so the first one's
    # key is free and the conflict comes from the second.
    await engine.store.create_messages([earlier.submissions[1]], engine.clock.now())

    with pytest.raises(IdempotencyConflictError):
        await engine.send_raw(
            message_bytes(headers=headers),
            mail_from=SENDER,
            recipients=[RECIPIENT, OTHER],
        )
    assert await stored_count(engine) == 1
