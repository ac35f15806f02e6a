from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sendarix_core.retry import (
    DEFAULT_RETRY_POLICY,
    BounceClass,
    FailureKind,
    classify_reply,
    parse_enhanced_code,
)


@pytest.mark.parametrize(
    ("code", "enhanced", "kind", "suppress", "bounce_class"),
    [
        (250, "2.0.0", None, False, None),
        (421, "4.7.0", FailureKind.TEMPORARY, False, None),
        (451, "4.4.1", FailureKind.TEMPORARY, False, None),
        (550, "5.1.1", FailureKind.PERMANENT, True, BounceClass.INVALID_RECIPIENT),
        (550, "5.1.10", FailureKind.PERMANENT, True, BounceClass.INVALID_DOMAIN),
        (553, "5.1.7", FailureKind.PERMANENT, False, BounceClass.INVALID_SENDER),
        (553, "5.1.8", FailureKind.PERMANENT, False, BounceClass.INVALID_SENDER),
        (554, "5.7.1", FailureKind.PERMANENT, False, BounceClass.POLICY),
        (552, "5.2.2", FailureKind.PERMANENT, False, BounceClass.MAILBOX_UNAVAILABLE),
        (550, None, FailureKind.PERMANENT, False, BounceClass.OTHER),
        (550, "garbage", FailureKind.PERMANENT, False, BounceClass.OTHER),
    ],
)
def test_classify_reply(
    code: int,
    enhanced: str | None,
    kind: FailureKind | None,
    suppress: bool,
    bounce_class: BounceClass | None,
) -> None:
    result = classify_reply(code, enhanced)
    assert result.delivered == (kind is None)
    assert result.kind == kind
    assert result.suppress == suppress
    assert result.bounce_class == bounce_class


@given(st.integers(400, 499), st.integers(0, 9), st.integers(0, 99))
def test_4xx_never_suppresses(code: int, subject: int, detail: int) -> None:
    result = classify_reply(code, f"4.{subject}.{detail}")
    assert result.kind == FailureKind.TEMPORARY
    assert not result.suppress


@given(st.integers(500, 599), st.integers(0, 99))
def test_x7_never_suppresses(code: int, detail: int) -> None:
    assert not classify_reply(code, f"5.7.{detail}").suppress


@given(st.integers(500, 599), st.integers(0, 99))
def test_address_status_at_mail_is_sender(code: int, detail: int) -> None:
    result = classify_reply(code, f"5.1.{detail}", to_mail=True)
    assert result.bounce_class == BounceClass.INVALID_SENDER
    assert not result.suppress


def test_classify_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="200-599"):
        classify_reply(199)


def test_parse_enhanced_code() -> None:
    assert parse_enhanced_code("5.1.1 <ada@example.com>: no such user") == "5.1.1"
    assert parse_enhanced_code("no such user") is None


def test_policy_has_six_attempts() -> None:
    assert DEFAULT_RETRY_POLICY.max_attempts == 6
    assert DEFAULT_RETRY_POLICY.delay_after(6) is None


def test_mismatched_class_does_not_suppress() -> None:
    result = classify_reply(521, "4.1.1")
    assert result.kind == FailureKind.PERMANENT
    assert not result.suppress
    assert result.bounce_class == BounceClass.OTHER
