from __future__ import annotations

import base64
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sendarix_core.errors import ConfigurationError, FieldError, ValidationError
from sendarix_core.model import Address, Attachment
from sendarix_core.states import Priority
from sendarix_core.validation import (
    Limits,
    SendRequest,
    validate_send_request,
)
from tests.core.strategies import (
    arbitrary_bodies,
    header_text,
    json_values,
    send_bodies,
)

_ABSENT = object()
NOW = datetime(2026, 4, 19, 14, 30, tzinfo=UTC)
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256))).decode()

MINIMAL = {
    "recipient": "user@example.com",
    "from": "Acme <no-reply@acme.example>",
    "subject": "Your verification code",
    "text": "847291",
}


def validate(changes: dict[str, Any] | None = None, **options: Any) -> SendRequest:
    body = {**MINIMAL, **(changes or {})}
    body = {key: value for key, value in body.items() if value is not _ABSENT}
    return validate_send_request(body, now=NOW, **options)


def errors_of(changes: dict[str, Any], **options: Any) -> list[FieldError]:
    with pytest.raises(ValidationError) as caught:
        validate(changes, **options)
    return list(caught.value.errors)


def codes_of(changes: dict[str, Any], **options: Any) -> set[tuple[str, str]]:
    return {(error.field, error.code) for error in errors_of(changes, **options)}


def test_minimal_body() -> None:
    request = validate()
    assert request.recipient == Address("user", "example.com")
    assert request.sender == Address("no-reply", "acme.example", "Acme")
    assert request.subject == "Your verification code"
    assert request.text == "847291"


def test_minimal_body_defaults() -> None:
    request = validate()
    assert request.html is None
    assert request.template is None
    assert request.template_data == {}
    assert request.attachments == ()
    assert request.headers == ()
    assert request.idempotency_key is None
    assert request.priority is Priority.NORMAL
    assert request.scheduled_at is None
    assert request.expires_at is None
    assert request.metadata == {}
    assert request.tags == ()


def test_full_body() -> None:
    request = validate(
        {
            "recipient": {"name": "Lovelace, Ada", "email": "ada@bücher.example"},
            "subject": None,
            "text": None,
            "template": "otp-code",
            "template_data": {"code": "847291", "expires_in": "5 minutes"},
            "headers": {"X-Idempotency-Key": "9b1d", "X-Campaign": "spring"},
            "priority": "high",
            "scheduled_time": "2026-04-19T17:00:00+02:00",
            "expires_at": "2026-04-19T15:30:00Z",
            "metadata": {"user_id": "42"},
            "tags": ["otp", "auth:login"],
        }
    )
    assert request.recipient == Address("ada", "xn--bcher-kva.example", "Lovelace, Ada")
    assert request.subject is None
    assert request.template == "otp-code"
    assert request.template_data == {"code": "847291", "expires_in": "5 minutes"}
    assert request.headers == (("X-Campaign", "spring"),)
    assert request.idempotency_key == "9b1d"
    assert request.priority is Priority.HIGH
    assert request.scheduled_at == datetime(2026, 4, 19, 15, 0, tzinfo=UTC)
    assert request.expires_at == datetime(2026, 4, 19, 15, 30, tzinfo=UTC)
    assert request.metadata == {"user_id": "42"}
    assert request.tags == ("otp", "auth:login")


def test_body_not_mapping() -> None:
    with pytest.raises(TypeError, match="got list"):
        validate_send_request([MINIMAL], now=NOW)  # type: ignore[arg-type]


def test_naive_now_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        validate_send_request(MINIMAL, now=datetime(2026, 4, 19))


def test_every_error_reported() -> None:
    codes = codes_of(
        {
            "recipient": "bob@",
            "from": 42,
            "subject": "a\nb",
            "priority": "urgent",
            "tags": "otp",
            "colour": "red",
        }
    )
    assert codes == {
        ("recipient", "missing_domain"),
        ("from", "invalid_type"),
        ("subject", "header_injection"),
        ("priority", "invalid_value"),
        ("tags", "invalid_type"),
        ("colour", "unknown_field"),
    }


def test_validation_error_counts_fields() -> None:
    with pytest.raises(ValidationError, match="2 fields are invalid"):
        validate({"recipient": "bob@", "from": "eve@"})


def test_address_error_message_kept() -> None:
    [error] = errors_of({"recipient": "bob@"})
    assert error.message == "'bob@' has no domain"


INVALID = [
    # Required fields and addresses.
    ({"recipient": _ABSENT}, "recipient", "missing_field"),
    ({"recipient": None}, "recipient", "missing_field"),
    ({"recipient": 42}, "recipient", "invalid_type"),
    ({"recipient": ["a@example.com"]}, "recipient", "invalid_type"),
    (
        {"recipient": ["a@example.com", "b@example.org"]},
        "recipient",
        "multiple_addresses",
    ),
    ({"recipient": "a@example.com, b@example.org"}, "recipient", "multiple_addresses"),
    ({"recipient": "ada@[192.0.2.1]"}, "recipient", "invalid_domain"),
    (
        {"recipient": "Lovelace, Ada <ada@example.com>"},
        "recipient",
        "display_name_invalid",
    ),
    (
        {"recipient": "ada@example.com\r\nBcc: eve@example.org"},
        "recipient",
        "header_injection",
    ),
    ({"from": _ABSENT}, "from", "missing_field"),
    ({"from": "no-reply"}, "from", "invalid_address"),
    ({"from": {"email": "bob@"}}, "from", "missing_domain"),
    # Subject.
    ({"subject": _ABSENT}, "subject", "missing_field"),
    ({"subject": 42}, "subject", "invalid_type"),
    ({"subject": "Hi\r\nBcc: eve@example.org"}, "subject", "header_injection"),
    ({"subject": "Hi\x00"}, "subject", "header_injection"),
    ({"subject": "Hi\u2028there"}, "subject", "header_injection"),
    ({"subject": "Hi\x1b[31m"}, "subject", "invalid_character"),
    ({"subject": "x" * 999}, "subject", "too_long"),
    # Body.
    ({"text": _ABSENT}, "text", "missing_body"),
    ({"text": ""}, "text", "missing_body"),
    ({"text": None, "html": None}, "text", "missing_body"),
    ({"text": 42}, "text", "invalid_type"),
    ({"html": ["<p>"]}, "html", "invalid_type"),
    ({"text": "\ud800"}, "text", "invalid_character"),
    ({"template": "otp"}, "template", "conflicting_body"),
    (
        {"text": None, "html": "<p>Hi</p>", "template": "otp"},
        "template",
        "conflicting_body",
    ),
    ({"text": None, "template": 42}, "template", "invalid_type"),
    ({"text": None, "template": " "}, "template", "invalid_value"),
    ({"text": None, "template": "otp\n"}, "template", "header_injection"),
    (
        {"text": None, "template": "otp", "template_data": []},
        "template_data",
        "invalid_type",
    ),
    ({"template_data": {"code": "1"}}, "template_data", "missing_template"),
    # Unknown fields.
    ({"to": "ada@example.com"}, "to", "unknown_field"),
    ({"scheduled_at": "2026-04-19T15:00:00Z"}, "scheduled_at", "unknown_field"),
    # Headers.
    ({"headers": ["X-A: 1"]}, "headers", "invalid_type"),
    ({"headers": {"X-A": 1}}, "headers.X-A", "invalid_type"),
    (
        {"headers": {"X-A": "1\r\nBcc: eve@example.org"}},
        "headers.X-A",
        "header_injection",
    ),
    ({"headers": {"X-A": "1\n"}}, "headers.X-A", "header_injection"),
    ({"headers": {"X-A": "1\x00"}}, "headers.X-A", "header_injection"),
    ({"headers": {"X-A": "\x07"}}, "headers.X-A", "invalid_character"),
    ({"headers": {"X-A": "x" * 999}}, "headers.X-A", "too_long"),
    ({"headers": {"X-A\r\nBcc": "1"}}, "headers.X-A\r\nBcc", "header_injection"),
    ({"headers": {"X A": "1"}}, "headers.X A", "invalid_header_name"),
    ({"headers": {"X:A": "1"}}, "headers.X:A", "invalid_header_name"),
    ({"headers": {"": "1"}}, "headers.", "invalid_header_name"),
    ({"headers": {"X-Ä": "1"}}, "headers.X-Ä", "invalid_header_name"),
    ({"headers": {"X-" + "a" * 75: "1"}}, "headers.X-" + "a" * 75, "too_long"),
    ({"headers": {"X-A": "1", "x-a": "2"}}, "headers.x-a", "duplicate"),
    (
        {"headers": {"X-Idempotency-Key": 42}},
        "headers.X-Idempotency-Key",
        "invalid_type",
    ),
    (
        {"headers": {"X-Idempotency-Key": ""}},
        "headers.X-Idempotency-Key",
        "invalid_idempotency_key",
    ),
    (
        {"headers": {"X-Idempotency-Key": "a b"}},
        "headers.X-Idempotency-Key",
        "invalid_idempotency_key",
    ),
    (
        {"headers": {"X-Idempotency-Key": "ü"}},
        "headers.X-Idempotency-Key",
        "invalid_idempotency_key",
    ),
    (
        {"headers": {"X-Idempotency-Key": "k" * 256}},
        "headers.X-Idempotency-Key",
        "invalid_idempotency_key",
    ),
    # Priority.
    ({"priority": "urgent"}, "priority", "invalid_value"),
    ({"priority": "HIGH"}, "priority", "invalid_value"),
    ({"priority": 1}, "priority", "invalid_type"),
    # Times.
    ({"scheduled_time": "2026-04-19T15:00:00"}, "scheduled_time", "missing_timezone"),
    ({"scheduled_time": "2026-04-20"}, "scheduled_time", "missing_timezone"),
    ({"scheduled_time": "tomorrow"}, "scheduled_time", "invalid_datetime"),
    ({"scheduled_time": 1776609000}, "scheduled_time", "invalid_type"),
    ({"scheduled_time": "2026-05-19T14:31:00Z"}, "scheduled_time", "too_far_ahead"),
    ({"expires_at": "0001-01-01T00:00:00+01:00"}, "expires_at", "invalid_datetime"),
    ({"expires_at": "2026-04-19T14:30:00Z"}, "expires_at", "in_the_past"),
    ({"expires_at": "2026-04-19T10:00:00Z"}, "expires_at", "in_the_past"),
    ({"expires_at": "2026-04-19T15:00:00"}, "expires_at", "missing_timezone"),
    (
        {
            "scheduled_time": "2026-04-19T16:00:00Z",
            "expires_at": "2026-04-19T16:00:00Z",
        },
        "expires_at",
        "before_scheduled_time",
    ),
    # Metadata.
    ({"metadata": ["user_id"]}, "metadata", "invalid_type"),
    ({"metadata": {"user_id": 42}}, "metadata.user_id", "invalid_type"),
    ({"metadata": {"user_id": None}}, "metadata.user_id", "invalid_type"),
    ({"metadata": {"": "x"}}, "metadata.", "invalid_value"),
    ({"metadata": {"k" * 41: "x"}}, "metadata." + "k" * 41, "too_long"),
    ({"metadata": {"k": "v" * 501}}, "metadata.k", "too_long"),
    ({"metadata": {"k": "\x07"}}, "metadata.k", "invalid_character"),
    ({"metadata": {"k\n": "v"}}, "metadata.k\n", "invalid_character"),
    ({"metadata": {f"k{i}": "v" for i in range(51)}}, "metadata", "too_many"),
    # Tags.
    ({"tags": "otp"}, "tags", "invalid_type"),
    ({"tags": [42]}, "tags.0", "invalid_type"),
    ({"tags": ["a b"]}, "tags.0", "invalid_tag"),
    ({"tags": [""]}, "tags.0", "invalid_tag"),
    ({"tags": ["ü"]}, "tags.0", "invalid_tag"),
    ({"tags": ["t" * 129]}, "tags.0", "too_long"),
    ({"tags": ["otp", "otp"]}, "tags.1", "duplicate"),
    ({"tags": [f"t{i}" for i in range(11)]}, "tags", "too_many"),
]


@pytest.mark.parametrize(("changes", "field", "code"), INVALID)
def test_invalid_field(changes: dict[str, Any], field: str, code: str) -> None:
    assert codes_of(changes) == {(field, code)}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"from": 42},
            "expected an address string or an object with 'name' and 'email', got 42",
        ),
        ({"subject": 42}, "expected a string, got 42"),
        ({"subject": True}, "expected a string, got true"),
        ({"subject": [1]}, "expected a string, got a list"),
        ({"subject": {"a": 1}}, "expected a string, got an object"),
        ({"to": "ada@example.com"}, "unknown field 'to'; did you mean 'recipient'?"),
        ({"subjet": "Hi"}, "unknown field 'subjet'; did you mean 'subject'?"),
        ({"priority": "urgent"}, "expected 'high', 'normal' or 'low', got 'urgent'"),
        (
            {"scheduled_time": "2026-04-19T15:00:00"},
            "'2026-04-19T15:00:00' has no timezone",
        ),
        ({"metadata": {"n": 42}}, "expected a string, got 42; send numbers"),
        (
            {"metadata": {"k\u2028": "v"}},
            "contains the line separator U+2028",
        ),
        ({"metadata": {"k\x07": "v"}}, "contains the control character U+0007"),
        ({"metadata": {"k": "\ud800"}}, "contains the lone surrogate U+D800"),
        ({"headers": {"X-A": "a\x07"}}, "contains the control character U+0007"),
    ],
)
def test_error_message(changes: dict[str, Any], expected: str) -> None:
    [error] = errors_of(changes)
    assert expected in error.message


def test_error_message_truncates_value() -> None:
    [error] = errors_of({"priority": "u" * 200})
    assert "u" * 59 + "…'" in error.message
    assert "u" * 60 not in error.message


# Sender and body.


def test_default_sender_used() -> None:
    request = validate({"from": _ABSENT}, default_sender="Acme <no-reply@acme.example>")
    assert request.sender == Address("no-reply", "acme.example", "Acme")


def test_from_overrides_default_sender() -> None:
    request = validate(
        {"from": "ada@example.com"}, default_sender="no-reply@acme.example"
    )
    assert request.sender == Address("ada", "example.com")


def test_invalid_default_sender() -> None:
    with pytest.raises(ConfigurationError, match="default sender 'acme'"):
        validate({"from": _ABSENT}, default_sender="acme")


def test_from_object_form() -> None:
    request = validate(
        {"from": {"name": "Acme, Inc.", "email": "no-reply@acme.example"}}
    )
    assert request.sender.display_name == "Acme, Inc."


def test_html_only() -> None:
    request = validate({"text": None, "html": "<p>847291</p>"})
    assert request.html == "<p>847291</p>"
    assert request.text is None


def test_text_and_html() -> None:
    request = validate({"html": "<p>847291</p>"})
    assert request.text == "847291"
    assert request.html == "<p>847291</p>"


def test_empty_text_with_html_is_none() -> None:
    request = validate({"text": "", "html": "<p>Hi</p>"})
    assert request.text is None


def test_template_with_subject() -> None:
    request = validate({"text": None, "template": "otp", "subject": "Override"})
    assert request.subject == "Override"


def test_template_without_data() -> None:
    request = validate({"text": None, "subject": None, "template": "otp"})
    assert request.template_data == {}


def test_text_byte_limit() -> None:
    limits = Limits(max_text_bytes=10)
    assert codes_of({"text": "ü" * 6}, limits=limits) == {("text", "too_large")}


def test_text_at_byte_limit() -> None:
    limits = Limits(max_text_bytes=12)
    assert validate({"text": "ü" * 6}, limits=limits).text == "ü" * 6


def test_html_byte_limit() -> None:
    limits = Limits(max_html_bytes=3)
    assert codes_of({"html": "<p>x</p>"}, limits=limits) == {("html", "too_large")}


def test_subject_length_counts_characters() -> None:
    assert validate({"subject": "ü" * 998}).subject == "ü" * 998


# Headers.


def test_headers_keep_order() -> None:
    headers = {"X-B": "2", "Reply-To": "support@acme.example", "X-A": "1"}
    request = validate({"headers": headers})
    assert request.headers == (
        ("X-B", "2"),
        ("Reply-To", "support@acme.example"),
        ("X-A", "1"),
    )


def test_header_value_unicode_and_tab() -> None:
    request = validate({"headers": {"X-Note": "Grüße\tan alle"}})
    assert request.headers == (("X-Note", "Grüße\tan alle"),)


@pytest.mark.parametrize(
    "name",
    [
        "Bcc",
        "bcc",
        "DKIM-Signature",
        "Received",
        "Return-Path",
        "Content-Type",
        "content-transfer-encoding",
        "Content-Disposition",
        "MIME-Version",
        "Message-ID",
        "Date",
        "From",
        "To",
        "Subject",
        "SENDER",
        "X-Sendarix-Priority",
        "x-sendarix-tags",
        "Authentication-Results",
        "Received-SPF",
        "ARC-Seal",
    ],
)
def test_reserved_header(name: str) -> None:
    assert codes_of({"headers": {name: "x"}}) == {
        (f"headers.{name}", "reserved_header")
    }


@pytest.mark.parametrize(
    "name", ["X-Idempotency-Key", "x-idempotency-key", "X-IDEMPOTENCY-KEY"]
)
def test_idempotency_key_extracted(name: str) -> None:
    request = validate({"headers": {name: "9b1d-4f2a", "X-A": "1"}})
    assert request.idempotency_key == "9b1d-4f2a"
    assert request.headers == (("X-A", "1"),)


def test_idempotency_key_of_255() -> None:
    request = validate({"headers": {"X-Idempotency-Key": "k" * 255}})
    assert request.idempotency_key == "k" * 255


def test_idempotency_key_given_twice() -> None:
    headers = {"X-Idempotency-Key": "a", "x-idempotency-key": "b"}
    assert codes_of({"headers": headers}) == {
        ("headers.x-idempotency-key", "duplicate")
    }


def test_header_count_limit() -> None:
    headers = {f"X-H{i}": "v" for i in range(51)}
    assert codes_of({"headers": headers}) == {("headers", "too_many")}


def test_many_headers_refused_by_count() -> None:
    headers = {f"X-H{i}\r\n": "v\r\n" for i in range(10_000)}

    [error] = errors_of({"headers": headers})

    assert (error.field, error.code) == ("headers", "too_many")
    assert error.message == "10000 headers were given; the maximum is 50"


def test_unknown_fields_listed_up_to_twenty() -> None:
    errors = errors_of({f"extra{i}": 1 for i in range(1_000)})

    assert len(errors) == 21
    assert [error.field for error in errors[:20]] == [f"extra{i}" for i in range(20)]
    assert errors[20].field == "extra20"
    assert "979 more unknown fields not listed" in errors[20].message


def test_header_count_excludes_idempotency_key() -> None:
    headers = {f"X-H{i}": "v" for i in range(50)}
    headers["X-Idempotency-Key"] = "k"
    assert len(validate({"headers": headers}).headers) == 50


@given(header_text, st.sampled_from(["\r", "\n", "\r\n"]), header_text)
def test_header_line_break_rejected(before: str, line_break: str, after: str) -> None:
    value = before + line_break + after
    assert codes_of({"headers": {"X-A": value}}) == {
        ("headers.X-A", "header_injection")
    }


@given(header_text)
def test_header_text_accepted(value: str) -> None:
    assert validate({"headers": {"X-A": value}}).headers == (("X-A", value),)


# Times.


def test_scheduled_time_converted_to_utc() -> None:
    request = validate({"scheduled_time": "2026-04-20T09:00:00-05:00"})
    assert request.scheduled_at == datetime(2026, 4, 20, 14, 0, tzinfo=UTC)


def test_scheduled_time_is_utc() -> None:
    request = validate({"scheduled_time": "2026-04-20T09:00:00+09:00"})
    assert request.scheduled_at is not None
    assert request.scheduled_at.tzinfo is UTC


@pytest.mark.parametrize(
    "value", ["2026-04-19T14:30:00Z", "2026-04-19T14:29:00Z", "2020-01-01T00:00:00Z"]
)
def test_past_scheduled_time_means_now(value: str) -> None:
    assert validate({"scheduled_time": value}).scheduled_at is None


def test_scheduled_time_at_limit() -> None:
    limit = NOW + timedelta(days=30)
    request = validate({"scheduled_time": limit.isoformat()})
    assert request.scheduled_at == limit


def test_scheduled_time_limit_configurable() -> None:
    limits = Limits(max_scheduled_ahead=timedelta(hours=1))
    changes = {"scheduled_time": "2026-04-19T15:31:00Z"}
    assert codes_of(changes, limits=limits) == {("scheduled_time", "too_far_ahead")}


def test_expires_at_after_past_schedule() -> None:
    changes = {
        "scheduled_time": "2026-04-19T10:00:00Z",
        "expires_at": "2026-04-19T14:31:00Z",
    }
    request = validate(changes)
    assert request.expires_at == datetime(2026, 4, 19, 14, 31, tzinfo=UTC)


def test_expires_at_after_schedule() -> None:
    changes = {
        "scheduled_time": "2026-04-19T16:00:00Z",
        "expires_at": "2026-04-19T16:00:01Z",
    }
    request = validate(changes)
    assert request.expires_at == datetime(2026, 4, 19, 16, 0, 1, tzinfo=UTC)


def test_null_optionals_are_defaults() -> None:
    changes = dict.fromkeys(
        [
            "priority",
            "scheduled_time",
            "expires_at",
            "headers",
            "metadata",
            "tags",
            "attachments",
        ]
    )
    request = validate(changes)
    assert request.priority is Priority.NORMAL
    assert request.headers == ()
    assert request.attachments == ()


# Attachments.


def attachment(**changes: Any) -> dict[str, Any]:
    item = {"filename": "logo.png", "content_type": "image/png", "content": PNG}
    item.update(changes)
    return {key: value for key, value in item.items() if value is not _ABSENT}


def test_attachment_decoded() -> None:
    request = validate({"attachments": [attachment()]})
    assert request.attachments == (
        Attachment("logo.png", "image/png", base64.b64decode(PNG)),
    )


def test_inline_attachment() -> None:
    item = attachment(content_id="logo@acme", inline=True)
    [decoded] = validate({"attachments": [item]}).attachments
    assert decoded.content_id == "logo@acme"
    assert decoded.inline is True


def test_content_type_lowercased() -> None:
    [decoded] = validate(
        {"attachments": [attachment(content_type="Image/PNG")]}
    ).attachments
    assert decoded.content_type == "image/png"


@pytest.mark.parametrize(
    "content",
    [
        "aGVsbG8=",
        "aGVsbG8",
        "aGVs\r\nbG8=",
        " aGVsbG8= \n",
    ],
)
def test_base64_forms(content: str) -> None:
    [decoded] = validate({"attachments": [attachment(content=content)]}).attachments
    assert decoded.content == b"hello"


def test_empty_attachment() -> None:
    [decoded] = validate({"attachments": [attachment(content="")]}).attachments
    assert decoded.content == b""


def test_unicode_filename() -> None:
    [decoded] = validate(
        {"attachments": [attachment(filename="Rechnung März.pdf")]}
    ).attachments
    assert decoded.filename == "Rechnung März.pdf"


ATTACHMENT_ERRORS = [
    ("x", "attachments.0", "invalid_type"),
    (attachment(filename=_ABSENT), "attachments.0.filename", "missing_field"),
    (attachment(filename=42), "attachments.0.filename", "invalid_type"),
    (attachment(filename=""), "attachments.0.filename", "invalid_filename"),
    (
        attachment(filename="../etc/passwd"),
        "attachments.0.filename",
        "invalid_filename",
    ),
    (attachment(filename="C:\\logo.png"), "attachments.0.filename", "invalid_filename"),
    (attachment(filename="a\r\nb.png"), "attachments.0.filename", "header_injection"),
    (attachment(filename="a\x00.png"), "attachments.0.filename", "header_injection"),
    (attachment(filename="x" * 256), "attachments.0.filename", "too_long"),
    (attachment(content_type=_ABSENT), "attachments.0.content_type", "missing_field"),
    (
        attachment(content_type="png"),
        "attachments.0.content_type",
        "invalid_content_type",
    ),
    (
        attachment(content_type="image/png; name=x"),
        "attachments.0.content_type",
        "invalid_content_type",
    ),
    (
        attachment(content_type="image/png\r\nBcc: x"),
        "attachments.0.content_type",
        "invalid_content_type",
    ),
    (
        attachment(content_type="/png"),
        "attachments.0.content_type",
        "invalid_content_type",
    ),
    (attachment(content=_ABSENT), "attachments.0.content", "missing_field"),
    (attachment(content=[1]), "attachments.0.content", "invalid_type"),
    (attachment(content="aGVsbG8$"), "attachments.0.content", "invalid_base64"),
    (attachment(content="a"), "attachments.0.content", "invalid_base64"),
    (attachment(content="a==="), "attachments.0.content", "invalid_base64"),
    (attachment(content="aGV=sbG8"), "attachments.0.content", "invalid_base64"),
    (attachment(content="_-8="), "attachments.0.content", "invalid_base64"),
    (attachment(content="aGVsbG8ü"), "attachments.0.content", "invalid_base64"),
    (attachment(content_id="<logo>"), "attachments.0.content_id", "invalid_content_id"),
    (attachment(content_id="lo go"), "attachments.0.content_id", "invalid_content_id"),
    (attachment(content_id=""), "attachments.0.content_id", "invalid_content_id"),
    (attachment(content_id=7), "attachments.0.content_id", "invalid_type"),
    (attachment(inline=True), "attachments.0.content_id", "missing_content_id"),
    (
        attachment(inline="yes", content_id="a@b"),
        "attachments.0.inline",
        "invalid_type",
    ),
    (attachment(inline=1, content_id="a@b"), "attachments.0.inline", "invalid_type"),
    (attachment(disposition="inline"), "attachments.0.disposition", "unknown_field"),
]


@pytest.mark.parametrize(("item", "field", "code"), ATTACHMENT_ERRORS)
def test_attachment_invalid(item: Any, field: str, code: str) -> None:
    assert codes_of({"attachments": [item]}) == {(field, code)}


def test_attachments_not_list() -> None:
    assert codes_of({"attachments": attachment()}) == {("attachments", "invalid_type")}


def test_attachment_field_path_has_index() -> None:
    items = [attachment(), attachment(), attachment(content="!")]
    assert codes_of({"attachments": items}) == {
        ("attachments.2.content", "invalid_base64")
    }


def test_url_safe_base64_hint() -> None:
    [error] = errors_of({"attachments": [attachment(content="_-8=")]})
    assert "URL-safe" in error.message


def test_duplicate_content_id() -> None:
    items = [attachment(content_id="logo@acme"), attachment(content_id="logo@acme")]
    assert codes_of({"attachments": items}) == {
        ("attachments.1.content_id", "duplicate")
    }


def test_attachment_count_limit() -> None:
    items = [attachment(content="")] * 3
    limits = Limits(max_attachments=2)
    assert codes_of({"attachments": items}, limits=limits) == {
        ("attachments", "too_many")
    }


def test_attachment_size_limit() -> None:
    limits = Limits(max_attachment_bytes=4)
    item = attachment(content="aGVsbG8=")
    assert codes_of({"attachments": [item]}, limits=limits) == {
        ("attachments.0.content", "too_large")
    }


def test_attachment_at_size_limit() -> None:
    limits = Limits(max_attachment_bytes=5)
    request = validate({"attachments": [attachment(content="aGVsbG8=")]}, limits=limits)
    assert request.attachments[0].content == b"hello"


# Metadata and tags.


def test_metadata_limits_inclusive() -> None:
    metadata = {f"{i:040d}": "v" * 500 for i in range(50)}
    assert validate({"metadata": metadata}).metadata == metadata


def test_tags_limits_inclusive() -> None:
    tags = [f"{i}-" + "t" * 126 for i in range(10)]
    assert validate({"tags": tags}).tags == tuple(tags)


# Properties.


@given(send_bodies(NOW))
def test_generated_bodies_valid(body: dict[str, Any]) -> None:
    request = validate_send_request(body, now=NOW)
    assert request.recipient.domain.isascii()


@given(arbitrary_bodies(NOW) | st.dictionaries(st.text(max_size=12), json_values))
def test_only_validation_error(body: dict[str, Any]) -> None:
    with contextlib.suppress(ValidationError):
        validate_send_request(body, now=NOW)


@pytest.mark.parametrize("name", ["Cc", "cc", "Resent-To", "Resent-Bcc"])
def test_recipient_headers_reserved(name: str) -> None:
    body = {**VALID_BODY_FOR_HEADERS, "headers": {name: "x@example.com"}}
    with pytest.raises(ValidationError) as caught:
        validate_send_request(body, now=NOW_FOR_HEADERS)
    assert caught.value.errors[0].code == "reserved_header"


def test_reply_to_must_be_address() -> None:
    body = {**VALID_BODY_FOR_HEADERS, "headers": {"Reply-To": "not an address"}}
    with pytest.raises(ValidationError) as caught:
        validate_send_request(body, now=NOW_FOR_HEADERS)
    assert caught.value.errors[0].field == "headers.Reply-To"


def test_empty_subject_rejected() -> None:
    body = {**VALID_BODY_FOR_HEADERS, "subject": "  "}
    with pytest.raises(ValidationError) as caught:
        validate_send_request(body, now=NOW_FOR_HEADERS)
    assert caught.value.errors[0].code == "missing_field"


def test_idempotency_header_key_checked() -> None:
    from sendarix_core.validation import validate_idempotency_key

    assert validate_idempotency_key("9b1d-4a") == "9b1d-4a"
    for bad in ["", "has space", "x" * 256, "caf\u00e9"]:
        with pytest.raises(ValidationError):
            validate_idempotency_key(bad)


NOW_FOR_HEADERS = datetime(2026, 4, 19, 14, 30, tzinfo=UTC)
VALID_BODY_FOR_HEADERS = {
    "recipient": "user@example.com",
    "from": "no-reply@acme.example",
    "subject": "Hello",
    "text": "Hi.",
}
