"""``/healthz`` and ``/readyz``: the liveness and readiness probes.

``/healthz`` does no I/O, so a database outage never makes a supervisor
restart processes that a restart would not fix. ``/readyz`` also checks
the database, for load balancers that should send requests elsewhere.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sendarix_backends.engine import Engine
from sendarix_backends.readiness import (
    READ_TIMEOUT_SECONDS,
    WRITE_FAILURE_MAX_AGE_SECONDS,
    check_database,
)
from sendarix_http.errors import HttpError
from sendarix_http.http_io import JsonResponse, engine_of
from sendarix_http.registry import Reply, operation

__all__ = ["operations"]

_OK: dict[str, Any] = {
    "type": "object",
    "properties": {"status": {"const": "ok"}},
    "required": ["status"],
}


async def _health(request: Request) -> Response:
    """Return the liveness state of the process; needs no key.

    A background task of the engine that ended on an unexpected error makes
    the process unhealthy: it still accepts but no longer delivers.
    """
    _check_tasks(engine_of(request))
    return JsonResponse({"status": "ok"})


async def _readiness(request: Request) -> Response:
    """Return whether the process can serve requests; needs no key.

    It can when its background tasks run, a read from the database
    succeeds within ``READ_TIMEOUT_SECONDS``, and its last write did not
    fail (see ``check_database``).
    """
    engine = engine_of(request)
    _check_tasks(engine)

    problem = await check_database(engine.store)
    if problem is not None:
        request_id = getattr(request.state, "request_id", None)
        # The cause can name the database and its host: the error handler
        # logs it, and the client gets where to find it.
        raise HttpError(
            503,
            "storage_unavailable",
            f"{problem.summary}. The server log has the cause under "
            f"request_id {request_id}",
        ) from problem.cause
    return JsonResponse({"status": "ok"})


def _check_tasks(engine: Engine) -> None:
    stopped = engine.stopped_tasks
    if stopped:
        raise HttpError(
            503,
            "task_stopped",
            f"{', '.join(stopped)} stopped on an unexpected error (see the "
            "log); restart the process",
        )


operations = (
    operation(
        "GET",
        "/healthz",
        _health,
        operation_id="get_health",
        summary="Liveness probe",
        description="For process supervisors and liveness probes. Does not "
        "touch the database.",
        tag="meta",
        scope=None,
        errors=(503,),
        replies=Reply(
            status=200,
            description="the process is up and its background tasks run",
            schema=_OK,
        ),
    ),
    operation(
        "GET",
        "/readyz",
        _readiness,
        operation_id="get_readiness",
        summary="Readiness probe",
        description="For load balancers and readiness probes. Reads from the "
        f"database with a {READ_TIMEOUT_SECONDS:g} s timeout, and fails when "
        "the last write to it failed, for up to "
        f"{WRITE_FAILURE_MAX_AGE_SECONDS:g} s or until a write succeeds. "
        "Answers `503 storage_unavailable` or `503 task_stopped`.",
        tag="meta",
        scope=None,
        errors=(503,),
        replies=Reply(
            status=200,
            description="the process is up, its background tasks run, a read "
            "from its database succeeded and its last write did not fail",
            schema=_OK,
        ),
    ),
)
