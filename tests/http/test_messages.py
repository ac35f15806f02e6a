"""``/v1/messages`` through the real ASGI app."""

from __future__ import annotations

import base64
import json
import threading
from datetime import timedelta

import anyio
import httpx
import orjson
import pytest

from sendarix_backends.engine import Engine
from sendarix_core.clock import ManualClock
from sendarix_core.keys import Scope
from sendarix_http import http_io
from tests.http.conftest import key_with_scopes, message_body

pytestmark = pytest.mark.anyio


async def test_post_returns_202(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/messages", json=message_body())
    assert response.status_code == 202
    body = response.json()
    assert body["message_id"].startswith("msg_")
    assert body["status"] == "queued"
    assert body["recipient"] == "user@example.com"
    assert body["created_at"].endswith("Z")


async def test_every_response_has_headers(client: httpx.AsyncClient) -> None:
    for response in (
        await client.post("/v1/messages", json=message_body()),
        await client.get("/v1/messages/msg_missing"),
        await client.get("/v1/nowhere"),
        await client.get("/v1/messages", headers={"Authorization": ""}),
    ):
        assert response.headers["x-request-id"]
        assert response.headers["x-ratelimit-limit"] == "1000"
        assert int(response.headers["x-ratelimit-remaining"]) <= 1000
        assert int(response.headers["x-ratelimit-reset"]) % 60 == 0


async def test_get_shows_state_and_timeline(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    created = (await client.post("/v1/messages", json=message_body())).json()
    await engine.deliver_due()

    message = (await client.get(f"/v1/messages/{created['message_id']}")).json()
    assert message["status"] == "delivered"
    assert message["attempts"] == 1
    assert message["last_smtp_reply"]["code"] == 250
    assert message["from"] == "Acme <no-reply@acme.example>"

    events = (await client.get(f"/v1/messages/{created['message_id']}/events")).json()
    types = [event["type"] for event in events["data"]]
    assert types == ["message.queued", "message.accepted", "message.delivered"]
    assert all(event["event_id"].startswith("evt_") for event in events["data"])


async def test_list_filters_and_pages(client: httpx.AsyncClient) -> None:
    for number in range(5):
        await client.post(
            "/v1/messages", json=message_body(recipient=f"u{number}@x.example")
        )
    seen = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/messages", params=params)).json()
        seen += [message["recipient"] for message in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"u{number}@x.example" for number in reversed(range(5))]

    only = await client.get("/v1/messages", params={"recipient": "u3@x.example"})
    assert [m["recipient"] for m in only.json()["data"]] == ["u3@x.example"]
    delivered = await client.get("/v1/messages", params={"status": "delivered"})
    assert delivered.json()["data"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"status": "sent"}, "status"),
        ({"status": ""}, "status"),
        ({"created_after": "2026-04-19T14:30:00"}, "created_after"),
        ({"cursor": "!!!"}, "cursor"),
        ({"limit": "\u0663"}, "limit"),
        ({"limit": "\uff15"}, "limit"),
    ],
)
async def test_list_rejects_bad_query(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    response = await client.get("/v1/messages", params=params)
    assert response.status_code == 422
    assert response.json()["error"]["errors"][0]["field"] == field


async def test_list_reports_every_bad_parameter(client: httpx.AsyncClient) -> None:
    params = {"status": "sent", "limit": "0", "created_after": "yesterday"}

    response = await client.get("/v1/messages", params=params)

    assert response.status_code == 422
    fields = [error["field"] for error in response.json()["error"]["errors"]]
    assert fields == ["status", "created_after", "limit"]


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/events"])
@pytest.mark.parametrize(
    "after", ["2026-04-20T00:00:00Z", "2026-04-19T00:00:00Z"], ids=["later", "equal"]
)
async def test_list_reversed_range_422(
    client: httpx.AsyncClient, path: str, after: str
) -> None:
    params = {"created_after": after, "created_before": "2026-04-19T00:00:00Z"}

    response = await client.get(path, params=params)

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "created_before"
    assert error["code"] == "invalid_range"
    assert after in error["message"]
    assert "2026-04-19T00:00:00Z" in error["message"]


async def test_cancel_scheduled(client: httpx.AsyncClient, clock: ManualClock) -> None:
    later = (clock.now() + timedelta(hours=1)).isoformat()
    created = (
        await client.post("/v1/messages", json=message_body(scheduled_time=later))
    ).json()
    assert created["status"] == "scheduled"

    response = await client.delete(f"/v1/messages/{created['message_id']}")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"


async def test_cancel_after_delivery_404(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    created = (await client.post("/v1/messages", json=message_body())).json()
    await engine.deliver_due()
    response = await client.delete(f"/v1/messages/{created['message_id']}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "message_not_cancellable"


async def test_unknown_message_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/messages/msg_nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "message_not_found"


async def test_idempotent_replay(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "9b1d4a"}
    first = await client.post("/v1/messages", json=message_body(), headers=headers)
    second = await client.post("/v1/messages", json=message_body(), headers=headers)
    assert second.status_code == 202
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers

    other = await client.post(
        "/v1/messages", json=message_body(subject="x"), headers=headers
    )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"


async def test_concurrent_replays_queue_one(client: httpx.AsyncClient) -> None:
    statuses = []

    async def post() -> None:
        response = await client.post(
            "/v1/messages", json=message_body(), headers={"Idempotency-Key": "k"}
        )
        statuses.append((response.status_code, response.json()["message_id"]))

    async with anyio.create_task_group() as task_group:
        for _ in range(20):
            task_group.start_soon(post)
    assert {status for status, _ in statuses} == {202}
    assert len({message_id for _, message_id in statuses}) == 1
    listed = (await client.get("/v1/messages")).json()["data"]
    assert len(listed) == 1


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_body"),
        (b"", "invalid_json"),
    ],
)
async def test_bad_json_400(
    client: httpx.AsyncClient, content: bytes, code: str
) -> None:
    response = await client.post(
        "/v1/messages", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


_OTHER_FIELDS = (
    b'"from": "no-reply@acme.example", "subject": "Hi", "text": "Time: 14:30"'
)


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (
            b'{"recipient": "u@example.com", "recipient": "v@example.com", '
            + _OTHER_FIELDS
            + b"}",
            "recipient",
        ),
        (
            b'{"recipient": "u@example.com", "headers": {"X-A": "1", "X-A": "2"}, '
            + _OTHER_FIELDS
            + b"}",
            "headers.X-A",
        ),
        (
            b'{"recipient": "u@example.com", "metadata": {"k": "a:b", "k": "c"}, '
            + _OTHER_FIELDS
            + b"}",
            "metadata.k",
        ),
        (
            b'{"recipient": "u@example.com", "template_data": {"a": [{"b": 1, '
            b'"b": 2}]}, ' + _OTHER_FIELDS + b"}",
            "template_data.a.0.b",
        ),
        (
            b'{"recipient": "u@example.com", "metadata": {"k": "1", "\\u006b": '
            b'"2"}, ' + _OTHER_FIELDS + b"}",
            "metadata.k",
        ),
    ],
)
async def test_repeated_json_key_400(
    client: httpx.AsyncClient, content: bytes, field: str
) -> None:
    response = await client.post(
        "/v1/messages", content=content, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    [detail] = error["errors"]
    assert detail["field"] == field
    assert detail["code"] == "duplicate"
    assert repr(field.rsplit(".", 1)[-1]) in detail["message"]
    assert not (await client.get("/v1/messages")).json()["data"]


async def test_large_body_parsed_off_loop(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    check = http_io.find_repeated_key

    def recording_check(raw: bytes, document: object) -> tuple[str, str] | None:
        threads.append(threading.current_thread().name)
        return check(raw, document)

    monkeypatch.setattr(http_io, "find_repeated_key", recording_check)
    filler = "x" * http_io.THREAD_PARSE_BYTES
    content = (
        b'{"recipient": "u@example.com", "metadata": {"k": "1", "k": "2"}, '
        b'"html": "' + filler.encode() + b'", ' + _OTHER_FIELDS + b"}"
    )

    response = await client.post(
        "/v1/messages", content=content, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["errors"][0]["field"] == "metadata.k"
    assert threads
    assert threads[0] != threading.main_thread().name


async def test_repeated_batch_mode_400(client: httpx.AsyncClient) -> None:
    item = json.dumps(message_body()).encode()
    content = b'{"mode": "strict", "messages": [' + item + b'], "mode": "permissive"}'

    response = await client.post(
        "/v1/messages/batch",
        content=content,
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 400
    [detail] = response.json()["error"]["errors"]
    assert detail["field"] == "mode"


async def test_same_key_in_two_objects_accepted(client: httpx.AsyncClient) -> None:
    body = message_body(metadata={"id": "1", "note": "at 14:30"}, headers={"X-Id": "1"})

    response = await client.post("/v1/messages", json=body)

    assert response.status_code == 202


async def test_invalid_utf8_names_byte(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/messages",
        content=b'{"subject": "x\xff\xfe"}',
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    assert "byte 0xff at offset 14" in error["message"]


async def test_huge_unknown_field_error_small(client: httpx.AsyncClient) -> None:
    name = "x" * 1_000_000
    response = await client.post("/v1/messages", json={**message_body(), name: 1})

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["code"] == "unknown_field"
    assert error["field"] == "x" * 199 + "…"
    assert len(error["message"]) == 2_000
    assert len(response.content) < 5_000


async def test_null_body_named_in_json_terms(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/messages", content=b"null", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "the body must be a JSON object, not null"
    )


async def test_invalid_fields_422(client: httpx.AsyncClient) -> None:
    body = message_body(
        recipient="bob@",
        subject="Hi\r\nBcc: victim@example.com",
        headers={"X-Campaign": "a\nb", "Bcc": "x@example.com"},
        scheduled_time="2026-04-19T14:30:00",
    )
    response = await client.post("/v1/messages", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    fields = {item["field"] for item in error["errors"]}
    assert {"recipient", "subject", "headers.X-Campaign", "headers.Bcc"} <= fields
    assert "scheduled_time" in fields
    assert "'bob@'" in next(
        e["message"] for e in error["errors"] if e["field"] == "recipient"
    )
    assert (await client.get("/v1/messages")).json()["data"] == []


async def test_oversized_body_413(client: httpx.AsyncClient) -> None:
    padding = "x" * (50 * 1024 * 1024)
    response = await client.post("/v1/messages", json=message_body(text=padding))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_wrong_content_type_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/messages", content=b"recipient=x", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415


async def test_content_type_missing_or_form(client: httpx.AsyncClient) -> None:
    body = orjson.dumps(message_body())
    missing = await client.post("/v1/messages", content=body)
    form = await client.post(
        "/v1/messages",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert "content-type" not in missing.request.headers
    assert missing.status_code == 202
    assert form.status_code == 415
    assert "send application/json" in form.json()["error"]["message"]


@pytest.mark.parametrize(
    "authorization", ["", "Bearer", "Bearer sk_live_wrong", "Basic dXNlcjpwYXNz"]
)
async def test_bad_key_401(client: httpx.AsyncClient, authorization: str) -> None:
    response = await client.post(
        "/v1/messages", json=message_body(), headers={"Authorization": authorization}
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


async def test_missing_scope_403(client: httpx.AsyncClient, engine: Engine) -> None:
    reader = await key_with_scopes(engine, Scope.MESSAGES_READ)
    response = await client.post(
        "/v1/messages",
        json=message_body(),
        headers={"Authorization": f"Bearer {reader}"},
    )
    assert response.status_code == 403
    assert response.json()["error"]["scope"] == "messages:send"


async def test_unknown_method_405(client: httpx.AsyncClient) -> None:
    response = await client.put("/v1/messages")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_rate_limit_429(client: httpx.AsyncClient, engine: Engine) -> None:
    secret, _ = await engine.create_api_key("slow", rate_limit=3)
    headers = {"Authorization": f"Bearer {secret}"}
    statuses = [
        (await client.get("/v1/messages", headers=headers)).status_code
        for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    limited = await client.get("/v1/messages", headers=headers)
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert int(limited.headers["retry-after"]) >= 1


async def test_guessing_keys_gets_429(client: httpx.AsyncClient) -> None:
    headers = {"Authorization": "Bearer sk_live_guess"}
    statuses = [
        (await client.get("/v1/messages", headers=headers)).status_code
        for _ in range(1001)
    ]
    assert statuses.count(401) == 1000
    assert statuses[-1] == 429


async def test_401_names_scheme(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/messages", headers={"Authorization": ""})
    assert response.headers["www-authenticate"] == 'Bearer realm="sendarix"'


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Basic dXNlcjpwYXNz", "unsupported authorization scheme 'Basic'"),
        ("sk_live_abc", "the Authorization header does not start with 'Bearer '"),
        ("Bearer ", "missing API key"),
    ],
)
async def test_401_message_names_problem(
    client: httpx.AsyncClient, header: str, expected: str
) -> None:
    response = await client.get("/v1/messages", headers={"Authorization": header})

    assert response.status_code == 401
    assert response.json()["error"]["message"].startswith(expected)


async def test_idempotency_header_validated(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/messages", json=message_body(), headers={"Idempotency-Key": "has space"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["errors"][0]["code"] == "invalid_idempotency_key"


async def test_long_key_quoted_alike_in_both(client: httpx.AsyncClient) -> None:
    key = "x" * 5000
    in_header = await client.post(
        "/v1/messages", json=message_body(), headers={"Idempotency-Key": key}
    )
    in_body = await client.post(
        "/v1/messages", json=message_body(headers={"X-Idempotency-Key": key})
    )

    [header_error] = in_header.json()["error"]["errors"]
    [body_error] = in_body.json()["error"]["errors"]
    assert "…" in header_error["message"]
    assert header_error["message"] == body_error["message"]


async def test_idempotency_header_sent_twice_same(client: httpx.AsyncClient) -> None:
    headers = [("Idempotency-Key", "k-1"), ("Idempotency-Key", "k-1")]

    first = await client.post("/v1/messages", json=message_body(), headers=headers)
    again = await client.post("/v1/messages", json=message_body(), headers=headers)

    assert first.status_code == 202
    assert again.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize(
    "headers",
    [
        [("Idempotency-Key", "")],
        [("Idempotency-Key", "k-1"), ("Idempotency-Key", "k-2")],
    ],
)
async def test_idempotency_header_empty_or_repeated(
    client: httpx.AsyncClient, headers: list[tuple[str, str]]
) -> None:
    response = await client.post("/v1/messages", json=message_body(), headers=headers)

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "Idempotency-Key"
    assert error["code"] == "invalid_idempotency_key"


async def test_idempotency_error_shows_utf8_key(client: httpx.AsyncClient) -> None:
    headers = [(b"Idempotency-Key", "k\u00e9".encode())]

    response = await client.post("/v1/messages", json=message_body(), headers=headers)

    assert response.status_code == 422
    assert "'k\u00e9'" in response.json()["error"]["errors"][0]["message"]


async def test_key_moved_to_header_replays(client: httpx.AsyncClient) -> None:
    in_body = message_body(headers={"X-Idempotency-Key": "k-42"})
    first = await client.post("/v1/messages", json=in_body)
    second = await client.post(
        "/v1/messages", json=message_body(), headers={"Idempotency-Key": "k-42"}
    )
    assert second.status_code == 202
    assert second.json()["message_id"] == first.json()["message_id"]


async def test_environments_do_not_see_each_other(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    from sendarix_core.keys import Environment

    secret, _ = await engine.create_api_key("ci", environment=Environment.TEST)
    test_headers = {"Authorization": f"Bearer {secret}"}
    live = (await client.post("/v1/messages", json=message_body())).json()
    test = (
        await client.post("/v1/messages", json=message_body(), headers=test_headers)
    ).json()

    assert (
        await client.get(f"/v1/messages/{live['message_id']}", headers=test_headers)
    ).status_code == 404
    assert (
        await client.delete(f"/v1/messages/{live['message_id']}", headers=test_headers)
    ).status_code == 404
    assert (await client.get(f"/v1/messages/{test['message_id']}")).status_code == 404
    listed = (await client.get("/v1/messages", headers=test_headers)).json()["data"]
    assert [m["message_id"] for m in listed] == [test["message_id"]]
    live_listed = (await client.get("/v1/messages")).json()["data"]
    assert [m["message_id"] for m in live_listed] == [live["message_id"]]


def encoded(position: str) -> str:
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("path", "position"),
    [
        ("/v1/messages", "msg_"),
        ("/v1/messages", "msg_01m932fvxnfsyjzks8e6eqkxc3%"),
        ("/v1/events", "desc:99999999999999999999999"),
        ("/v1/events", "desc:\u00b2"),
        ("/v1/suppressions", "99999999999999999999999:user@example.com"),
        ("/v1/suppressions", "9223372036854775807:user@example.com"),
    ],
)
async def test_edited_cursor_is_422(
    client: httpx.AsyncClient, path: str, position: str
) -> None:
    response = await client.get(path, params={"cursor": encoded(position)})

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "cursor"
    assert error["code"] == "invalid_cursor"


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v1/messages", "created_after"),
        ("/v1/events", "created_after"),
        ("/v1/events", "created_before"),
    ],
)
async def test_time_before_utc_range_is_422(
    client: httpx.AsyncClient, path: str, name: str
) -> None:
    response = await client.get(path, params={name: "0001-01-01T00:00:00+14:00"})

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert (error["field"], error["code"]) == (name, "invalid_time")


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/events", "/v1/suppressions"])
async def test_empty_cursor_is_422(client: httpx.AsyncClient, path: str) -> None:
    # A client that sends a null next_cursor as "" would otherwise read the
    # first page again and again.
    response = await client.get(path, params={"cursor": ""})

    assert response.status_code == 422, response.text
    [error] = response.json()["error"]["errors"]
    assert (error["field"], error["code"]) == ("cursor", "invalid_cursor")


async def test_empty_event_type_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/events", params={"type": ""})

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert (error["field"], error["code"]) == ("type", "invalid_event_type")


async def test_unknown_message_id_truncated(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v1/messages/msg_{'a' * 5000}")

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "message_not_found"
    assert len(error["message"]) < 200


async def test_trailing_slash_not_redirected(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/messages/", headers={"Host": "evil.example"})

    assert response.status_code == 404
    assert "location" not in response.headers
    assert response.json()["error"]["code"] == "route_not_found"


async def test_invalid_body_message_is_count(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/messages", json=message_body(recipient="bob@"))

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["message"] == "1 field is invalid"
    assert error["errors"] == [
        {
            "field": "recipient",
            "code": "missing_domain",
            "message": "'bob@' has no domain",
        }
    ]
