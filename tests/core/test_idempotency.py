from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from sendarix_core.idempotency import (
    IDEMPOTENCY_WINDOW,
    IdempotencyDecision,
    IdempotencyRecord,
    decide_idempotency,
    request_fingerprint,
)
from tests.core.factories import T0

RECORD = IdempotencyRecord(
    api_key_id="key_1",
    key="9b1d",
    fingerprint="abc",
    status_code=202,
    response={"message_id": "msg_1"},
    created_at=T0,
)


def test_first_use_proceeds() -> None:
    assert decide_idempotency(None, "abc", T0) == IdempotencyDecision.PROCEED


def test_same_body_replays() -> None:
    assert (
        decide_idempotency(RECORD, "abc", T0 + timedelta(hours=23))
        == IdempotencyDecision.REPLAY
    )


def test_other_body_conflicts() -> None:
    assert decide_idempotency(RECORD, "xyz", T0) == IdempotencyDecision.CONFLICT


def test_window_end_proceeds() -> None:
    later = T0 + IDEMPOTENCY_WINDOW
    assert decide_idempotency(RECORD, "xyz", later) == IdempotencyDecision.PROCEED


@given(st.dictionaries(st.text(), st.text() | st.integers()))
def test_fingerprint_ignores_key_order(body: dict[str, object]) -> None:
    reordered = dict(reversed(list(body.items())))
    assert request_fingerprint(body) == request_fingerprint(reordered)
