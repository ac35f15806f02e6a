"""``/v1/queue``: the queue's state, pauses, retries and cancellations."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sendarix_backends.queue_control import CancelOutcome, QueueControl, QueueView
from sendarix_core.keys import Scope
from sendarix_core.representation import format_time
from sendarix_core.states import MessageStatus, Priority
from sendarix_http.errors import HttpError
from sendarix_http.http_io import (
    JsonResponse,
    authorize_live,
    engine_of,
    read_json_object,
)
from sendarix_http.registry import Reply, operation
from sendarix_http.route_schemas import (
    CANCEL_REQUEST,
    PAUSE_REQUEST,
    PAUSE_RESULT,
    QUEUE,
    QUEUE_COUNT,
    RETRY_REQUEST,
)

__all__ = ["operations", "queue_to_dict"]


# The queue contains live mail, and its state is not split by environment.
_CHANGE = "control the queue, which contains live mail"
_READ = "read the queue, which contains live mail"


def queue_of(request: Request) -> QueueControl:
    control = engine_of(request).control
    if not control.has_queue_control:
        raise HttpError(
            501,
            "not_supported",
            "queue control needs the SQL storage backend (sqlite:// or "
            "postgresql:// in SENDARIX_DATABASE_URL)",
        )
    return control.queue


def queue_to_dict(view: QueueView, now_seconds: float) -> dict[str, Any]:
    waiting_states = [str(s) for s in MessageStatus if not s.is_terminal]
    by_status = {name: view.by_status.get(name, 0) for name in waiting_states}
    oldest = view.oldest_created_at
    return {
        "counts": {
            "total": sum(by_status.values()),
            "status": by_status,
            "priority": {str(p): view.by_priority.get(str(p), 0) for p in Priority},
        },
        "sites": [
            {
                "site": site.site,
                "recipient_domains": list(site.recipient_domains),
                "waiting": site.waiting,
                "parked": site.parked,
                "paused": site.paused,
            }
            for site in view.sites
        ],
        "oldest_created_at": format_time(oldest),
        "oldest_age_seconds": None
        if oldest is None
        else max(0.0, round(now_seconds - oldest.timestamp(), 3)),
        "next_retries": [
            {"message_id": message_id, "next_attempt_at": format_time(when)}
            for message_id, when in view.next_retries
        ],
        "paused": {
            "priorities": sorted(str(p) for p in view.pauses.priorities),
            "sites": sorted(view.pauses.sites),
        },
    }


def _outcome(outcome: CancelOutcome) -> dict[str, Any]:
    return {"count": outcome.count, "dry_run": outcome.dry_run, "more": outcome.more}


async def get_queue(request: Request) -> Response:
    await authorize_live(request, Scope.MESSAGES_READ, _READ)
    view = await queue_of(request).view()
    now = engine_of(request).clock.now().timestamp()
    return JsonResponse(queue_to_dict(view, now))


async def pause_queue(request: Request) -> Response:
    await authorize_live(request, Scope.ROUTES_WRITE, _CHANGE)
    body, _ = await read_json_object(request)
    kind, value = await queue_of(request).pause(body)
    return JsonResponse(
        {"kind": str(kind), "value": value, "paused": True, "unparked": 0}
    )


async def resume_queue(request: Request) -> Response:
    await authorize_live(request, Scope.ROUTES_WRITE, _CHANGE)
    body, _ = await read_json_object(request)
    kind, value, unparked = await queue_of(request).resume(body)
    return JsonResponse(
        {"kind": str(kind), "value": value, "paused": False, "unparked": unparked}
    )


async def retry_queue(request: Request) -> Response:
    await authorize_live(request, Scope.ROUTES_WRITE, _CHANGE)
    body, _ = await read_json_object(request)
    outcome = await queue_of(request).retry(body)
    engine_of(request).worker.wake()
    return JsonResponse(_outcome(outcome))


async def cancel_queue(request: Request) -> Response:
    await authorize_live(request, Scope.ROUTES_WRITE, _CHANGE)
    body, _ = await read_json_object(request)
    return JsonResponse(_outcome(await queue_of(request).cancel(body)))


_WRITE = Scope.ROUTES_WRITE
_RESULT = Reply(status=200, description="how many messages", schema=QUEUE_COUNT)
_PAUSE = Reply(status=200, description="the pause", schema=PAUSE_RESULT)

operations = [
    operation(
        "GET",
        "/v1/queue",
        get_queue,
        summary="Queue state",
        description="Waiting messages by status, priority and destination site "
        "(the 1,000 busiest recipient domains, grouped by the site they last "
        "resolved to), the oldest waiting message, the next retries and the "
        "pauses.",
        tag="queue",
        scope=Scope.MESSAGES_READ,
        replies=Reply(status=200, description="the queue", schema=QUEUE),
        errors=(501,),
    ),
    operation(
        "POST",
        "/v1/queue/pause",
        pause_queue,
        summary="Pause a priority tier or a destination site",
        description="Paused messages stay queued: claims skip a paused tier, "
        "and messages of a paused site are parked until it resumes (or until "
        "their `expires_at`, when they expire). Takes effect on every node "
        "within a second; deliveries in progress finish.",
        tag="queue",
        scope=_WRITE,
        request_schema=PAUSE_REQUEST,
        request_example={"site": "mx1.example.com,mx2.example.com"},
        replies=_PAUSE,
        errors=(501,),
    ),
    operation(
        "POST",
        "/v1/queue/resume",
        resume_queue,
        summary="Resume a paused priority tier or site",
        description="Parked messages of the site become due at once, or at "
        "their next attempt time when that is later. `404` when there is no "
        "such pause.",
        tag="queue",
        scope=_WRITE,
        request_schema=PAUSE_REQUEST,
        request_example={"priority": "low"},
        replies=_PAUSE,
        errors=(404, 501),
    ),
    operation(
        "POST",
        "/v1/queue/retry",
        retry_queue,
        summary="Retry deferred messages now",
        description="Makes the deferred messages matching `filter` due now; "
        "with `dry_run` only counts them. Messages a worker holds are left "
        "alone.",
        tag="queue",
        scope=_WRITE,
        request_schema=RETRY_REQUEST,
        request_example={"filter": {"recipient_domain": ["example.com"]}},
        replies=_RESULT,
        errors=(501,),
    ),
    operation(
        "POST",
        "/v1/queue/cancel",
        cancel_queue,
        summary="Cancel waiting messages by filter",
        description="Cancels the `scheduled` and `queued` messages matching "
        "`filter`, each with its `message.cancelled` event. Ask with "
        '`"dry_run": true` first: it returns the count and changes nothing. '
        "At most `limit` (default 10,000) per call; `more` says some remain.",
        tag="queue",
        scope=_WRITE,
        request_schema=CANCEL_REQUEST,
        request_example={"filter": {"tag": ["newsletter"]}, "dry_run": True},
        replies=_RESULT,
        errors=(501,),
    ),
]
