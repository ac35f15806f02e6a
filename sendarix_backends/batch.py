"""Batch submission: up to 500 messages in one request and one commit.

Every item is validated like a body of ``POST /v1/messages``. In ``strict``
mode one invalid item rejects the whole batch with a ``ValidationError``
whose field paths carry the item's index (``messages.3.recipient``), and
nothing is stored. In ``permissive`` mode the valid items are stored and
each invalid one gets its errors in the result. Either way the valid items
are stored by one ``create_batch`` call, so a batch costs one commit.

An ``Idempotency-Key`` covers the batch as a whole: the same key and body
within 24 hours replay the first response, another body is a conflict.
``headers.X-Idempotency-Key`` inside an item still works per item, in the
namespace of single messages, so an item may carry the batch's key.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import attrs

from sendarix_core.checks import Errors, check_no_nul, describe, json_excerpt
from sendarix_core.errors import (
    FieldError,
    IdempotencyConflictError,
    ValidationError,
)
from sendarix_core.header_checks import validate_idempotency_key
from sendarix_core.idempotency import (
    BATCH_KEY_PREFIX,
    IdempotencyRecord,
    request_fingerprint,
    without_null_fields,
)
from sendarix_core.keys import ApiKey
from sendarix_core.ports import BatchSubmission, Submission, SubmitOutcome

if TYPE_CHECKING:
    from sendarix_backends.engine import Engine

__all__ = ["BATCH_FIELDS", "MAX_BATCH_SIZE", "BatchMode", "BatchResult", "send_batch"]

MAX_BATCH_SIZE = 500

BATCH_FIELDS = frozenset({"messages", "mode"})

# The owner of batch idempotency keys submitted through the library without
# an API key; the same owner as for single messages.
_LIBRARY_KEY_ID = "library"


class BatchMode(StrEnum):
    STRICT = "strict"
    """One invalid item rejects the whole batch; nothing is stored."""
    PERMISSIVE = "permissive"
    """Valid items are stored; invalid ones are reported per item."""


@attrs.frozen(kw_only=True)
class BatchResult:
    """The ``202`` body of a batch, and whether it replays an earlier one."""

    response: Mapping[str, Any]
    replayed: bool = False


# One slot per item of the request: the index of its submission, or its errors.
_Slot = int | tuple[FieldError, ...]


async def send_batch(
    engine: Engine,
    body: Mapping[str, Any],
    *,
    api_key: ApiKey | None,
    idempotency_key: str | None,
) -> BatchResult:
    """Validate and store a batch; return one result per item, in order.

    Raises ``ValidationError`` for an invalid batch (or, in strict mode, an
    invalid item) and ``IdempotencyConflictError`` when the batch key, or in
    strict mode an item's key, was used with another body.
    """
    if idempotency_key is not None:
        idempotency_key = validate_idempotency_key(idempotency_key)
    items, mode = _check_batch(body)
    now = engine.clock.now()
    slots: list[_Slot] = []
    submissions: list[Submission] = []
    for index, item in enumerate(items):
        try:
            submission = await _prepare_item(engine, index, item, api_key, now)
        except ValidationError as error:
            slots.append(error.errors)
            continue
        slots.append(len(submissions))
        submissions.append(submission)

    invalid = [error for slot in slots if isinstance(slot, tuple) for error in slot]
    if mode is BatchMode.STRICT and invalid:
        raise ValidationError(invalid)

    claim = None
    if idempotency_key is not None:
        claim = IdempotencyRecord(
            api_key_id=api_key.id if api_key else _LIBRARY_KEY_ID,
            key=BATCH_KEY_PREFIX + idempotency_key,
            fingerprint=request_fingerprint(_with_items_without_nulls(body)),
            status_code=202,
            response={},
            created_at=now,
        )
    batch = BatchSubmission(
        submissions=submissions,
        respond=functools.partial(_respond, slots, submissions),
        idempotency=claim,
        all_or_nothing=mode is BatchMode.STRICT,
    )
    outcome = await engine.store.create_batch(batch, now)

    if outcome.conflict:
        raise IdempotencyConflictError(idempotency_key or "", None)
    if outcome.replay is not None:
        return BatchResult(response=outcome.replay.response, replayed=True)
    if outcome.rolled_back:
        raise _item_conflict(submissions, outcome.outcomes)
    engine.worker.wake()
    return BatchResult(response=outcome.response or {})


def _with_items_without_nulls(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return ``body`` with null fields of its items left out, as absent ones."""
    items = body.get("messages")
    if not isinstance(items, list):
        return body
    items_without_nulls = [
        without_null_fields(item) if isinstance(item, Mapping) else item
        for item in items
    ]
    return {**body, "messages": items_without_nulls}


def _check_batch(body: Mapping[str, Any]) -> tuple[list[Any], BatchMode]:
    errors = [
        FieldError(
            str(name),
            "unknown_field",
            f"unknown field {str(name)!r}; a batch has 'messages' and 'mode'",
        )
        for name in body
        if name not in BATCH_FIELDS
    ]
    # As in a message, a field set to null counts as absent.
    mode_value = body.get("mode")
    if mode_value is None:
        mode_value = str(BatchMode.STRICT)
    mode = _check_mode(mode_value, errors)

    items = body.get("messages")
    if not isinstance(items, list):
        message = "expected a list of 1 to 500 message objects"
        errors.append(FieldError("messages", "invalid_type", message))
    elif not 1 <= len(items) <= MAX_BATCH_SIZE:
        message = (
            f"{len(items)} messages were given; a batch has 1 to "
            f"{MAX_BATCH_SIZE}, so split larger ones"
        )
        errors.append(FieldError("messages", "invalid_count", message))

    if errors or mode is None or not isinstance(items, list):
        raise ValidationError(errors)
    return items, mode


def _check_mode(value: object, errors: list[FieldError]) -> BatchMode | None:
    if isinstance(value, str) and value in BatchMode.__members__.values():
        return BatchMode(value)
    message = f"expected 'strict' or 'permissive', got {json_excerpt(value)}"
    errors.append(FieldError("mode", "invalid_value", message))
    return None


async def _prepare_item(
    engine: Engine,
    index: int,
    item: object,
    api_key: ApiKey | None,
    now: datetime,
) -> Submission:
    """Return the submission of one item; errors name ``messages.<index>``."""
    prefix = f"messages.{index}"
    if not isinstance(item, Mapping):
        message = f"expected a message object, got {describe(item)}"
        raise ValidationError([FieldError(prefix, "invalid_type", message)])
    # The HTTP layer checks a batch for U+0000 item by item, here, so that
    # a permissive batch skips only the items that contain it.
    nul_errors = Errors()
    if not check_no_nul(prefix, item, nul_errors):
        raise ValidationError(nul_errors.items)
    try:
        return await engine.prepare_submission(
            item, api_key=api_key, idempotency_key=None, now=now
        )
    except ValidationError as error:
        raise ValidationError(
            [
                attrs.evolve(field_error, field=f"{prefix}.{field_error.field}")
                for field_error in error.errors
            ]
        ) from None


def _respond(
    slots: Sequence[_Slot],
    submissions: Sequence[Submission],
    outcomes: Sequence[SubmitOutcome],
) -> dict[str, Any]:
    """Build the batch response from the storage outcomes, in request order."""
    data: list[dict[str, Any]] = []
    for index, slot in enumerate(slots):
        if isinstance(slot, tuple):
            data.append({"errors": [error.to_dict() for error in slot]})
            continue
        outcome = outcomes[slot]
        if outcome.conflict:
            error = _conflict_error(index, submissions[slot])
            data.append({"errors": [error.to_dict()]})
        elif outcome.replay is not None:
            replayed = outcome.replay.response
            data.append(
                {"message_id": replayed["message_id"], "status": replayed["status"]}
            )
        else:
            message = submissions[slot].transition.after
            data.append({"message_id": message.id, "status": str(message.status)})
    return {"data": data}


def _conflict_error(index: int, submission: Submission) -> FieldError:
    key = submission.idempotency.key if submission.idempotency else ""
    return FieldError(
        f"messages.{index}.headers.X-Idempotency-Key",
        "idempotency_key_reused",
        f"idempotency key {key!r} was already used with a different message; "
        "use a new key for a new message",
    )


def _item_conflict(
    submissions: Sequence[Submission], outcomes: Sequence[SubmitOutcome]
) -> IdempotencyConflictError:
    """Return the error of a strict batch rolled back by an item's key."""
    for index, (submission, outcome) in enumerate(
        zip(submissions, outcomes, strict=True)
    ):
        if outcome.conflict and submission.idempotency is not None:
            return IdempotencyConflictError(
                submission.idempotency.key, None, field=f"messages.{index}"
            )
    raise AssertionError("a rolled-back batch has a conflicting item")
