"""The reference SMTP server: aiosmtpd that accepts every message and drops it.

It runs on the event loop ``sendarix serve`` runs its relay on.

python -m benchmarks.bare_smtp --port 2526
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from aiosmtpd.smtp import SMTP

from benchmarks import loops


class DropHandler:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 2.0.0 OK"


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    handler = DropHandler()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="bench.localhost"), "127.0.0.1", port
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    loops.run_coroutine(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
