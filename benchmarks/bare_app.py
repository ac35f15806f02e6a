"""The reference HTTP server: a bare Starlette app that returns ``202``.

It reads the request body and returns a fixed JSON body, with nothing
stored. ``uvicorn`` serves it with the options ``sendarix serve`` uses, on
the same event loop and with the same HTTP parser (httptools), without the
request head guards of ``sendarix_http.protocol``.

    python -m benchmarks.bare_app --port 8081
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from benchmarks import loops

_BODY = b'{"message_id": "msg_00000000000000000000000000", "status": "queued"}'


async def accept(request: Request) -> Response:
    await request.body()
    return Response(_BODY, status_code=202, media_type="application/json")


app = Starlette(routes=[Route("/v1/messages", accept, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    arguments = parser.parse_args()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=arguments.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        http="httptools",
    )
    loops.run_coroutine(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
