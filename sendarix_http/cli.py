"""The ``sendarix`` command: serve, worker, migrate and keys."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import logging
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.types import Message, Receive, Send
from starlette.types import Scope as AsgiScope

from sendarix_backends.engine import Engine
from sendarix_backends.settings import (
    DeliveryMode,
    SenderVerification,
    Settings,
    load_settings,
)
from sendarix_backends.sockets import LISTEN_BACKLOG
from sendarix_core.errors import ConfigurationError, SendarixError, ValidationError
from sendarix_core.key_requests import validate_key_request
from sendarix_core.keys import Environment, Scope
from sendarix_http import event_loop
from sendarix_http.app import create_app
from sendarix_http.inbound import attach_inbound
from sendarix_http.key_commands import add_key_commands, list_keys, revoke_key
from sendarix_http.logs import configure_logging
from sendarix_http.protocol import GuardedHttpProtocol
from sendarix_http.relay import Relay, run_in_lifespan

__all__ = ["main"]

logger = logging.getLogger("sendarix.cli")

# How long an idle keep-alive connection stays open. At uvicorn's default
# of 5 s, the same as httpx's idle expiry, a client that reused a connection
# just as the server closed it got a connection error. At 75 s, nginx's
# default, load balancers and clients with a shorter idle timeout close
# first (AWS's application load balancer closes after 60 s by default).
_HTTP_KEEP_ALIVE_SECONDS = 75

# Net allocations of container objects between two collections of the
# youngest generation; CPython's default is 700.
_GC_YOUNG_THRESHOLD = 10_000

# Flags that map to settings: (flag, setting, help). Each command offers the
# groups of flags that apply to it; the environment and the TOML file can set
# every setting for every command.
_DATABASE_FLAGS = (
    ("--database-url", "database_url", "sqlite:///path or postgresql://user@host/db"),
)
_LISTEN_FLAGS = (
    ("--http-host", "http_host", "address the HTTP API listens on"),
    ("--http-port", "http_port", "port the HTTP API listens on"),
    ("--relay-host", "relay_host", "address the SMTP relay listens on"),
    ("--relay-port", "relay_port", "port the SMTP relay listens on (0 turns it off)"),
    ("--default-sender", "default_sender", "from address used when a request has none"),
)
_DELIVERY_FLAGS = (
    ("--delivery-mode", "delivery_mode", "mx, smarthost or sink"),
    (
        "--smarthost",
        "smarthost",
        "smtp://user:pass@host:port, or smtps:// for implicit TLS",
    ),
    (
        "--dns-nameservers",
        "dns_nameservers",
        "comma-separated IP addresses, each with an optional :port, the resolver asks",
    ),
    ("--destination-port", "destination_port", "port used to connect to MX hosts"),
    ("--worker-concurrency", "worker_concurrency", "deliveries in flight per process"),
    (
        "--lease-seconds",
        "lease_seconds",
        "seconds a claimed message stays with one worker",
    ),
    ("--poll-interval", "poll_interval", "seconds between queue polls"),
)
_SETTING_FLAGS = _DATABASE_FLAGS + _LISTEN_FLAGS + _DELIVERY_FLAGS


def _add_setting_flags(
    parser: argparse.ArgumentParser,
    flags: tuple[tuple[str, str, str], ...] = _DATABASE_FLAGS,
) -> None:
    parser.add_argument(
        "--config", help="TOML file with settings (flags and environment win)"
    )
    for flag, dest, help_text in flags:
        parser.add_argument(flag, dest=dest, help=help_text)
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="DEBUG, INFO, WARNING or ERROR",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sendarix", description="Transactional email engine."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve", help="run the HTTP API, the SMTP relay and delivery workers"
    )
    _add_setting_flags(serve, _SETTING_FLAGS)
    worker = commands.add_parser("worker", help="run delivery workers only")
    _add_setting_flags(worker, _DATABASE_FLAGS + _DELIVERY_FLAGS)
    migrate = commands.add_parser(
        "migrate", help="bring the database schema up to date"
    )
    _add_setting_flags(migrate)

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="key_command", required=True)
    create = key_commands.add_parser("create", help="create a key and print it")
    _add_setting_flags(create)
    create.add_argument(
        "--name", required=True, help="a label such as 'production' or 'ci'"
    )
    create.add_argument(
        "--scope",
        action="append",
        dest="scopes",
        metavar="SCOPE",
        help=f"repeat for each scope: {', '.join(Scope)} (default: all)",
    )
    create.add_argument(
        "--test", action="store_true", help="a sk_test_ key: delivers to the sink"
    )
    create.add_argument(
        "--rate-limit", type=int, help="requests per minute (default 1000)"
    )
    create.add_argument(
        "--sender-domain",
        action="append",
        dest="sender_domains",
        default=[],
        metavar="DOMAIN",
        help="repeat for each domain the key may send from (default: any)",
    )
    create.add_argument(
        "--expires-at",
        help="ISO 8601 time with a timezone after which the key stops working",
    )
    for key_parser in add_key_commands(key_commands):
        _add_setting_flags(key_parser)
    return parser


def _settings_from(args: argparse.Namespace) -> Settings:
    overrides = {dest: getattr(args, dest, None) for _, dest, _ in _SETTING_FLAGS}
    return load_settings(config_file=args.config, overrides=overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        settings = _settings_from(args)
        if args.command == "serve":
            _serve(settings)
        elif args.command == "worker":
            event_loop.run(settings.event_loop, _run_worker(settings))
        elif args.command == "migrate":
            _migrate(settings)
        elif args.command == "keys" and args.key_command == "list":
            anyio.run(list_keys, settings)
        elif args.command == "keys" and args.key_command == "revoke":
            anyio.run(revoke_key, settings, args.key_id)
        elif args.command == "keys":
            anyio.run(_create_key, settings, args)
    except ConfigurationError as exc:
        print(f"sendarix: {exc}", file=sys.stderr)
        return 2
    except SendarixError as exc:
        print(f"sendarix: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _warn_about_settings(settings: Settings) -> None:
    if settings.sender_verification == SenderVerification.OFF:
        logger.warning(
            "sender verification is off: any from address is accepted; use this only "
            "in development",
            extra={"action": "sender_verification_off"},
        )
    if settings.delivery_mode == DeliveryMode.SINK:
        logger.warning(
            "delivery mode is sink: no message leaves this process",
            extra={"action": "sink_mode"},
        )


def _listen(host: str, port: int, option: str = "--http-port") -> socket.socket:
    """Bind the HTTP socket before anything starts, so a busy port fails fast."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # The protocol number must be IPPROTO_TCP, not 0: asyncio sets
    # TCP_NODELAY only on accepted sockets that declare it, and without it each
    # keep-alive response waits about 40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
            f"{_listen_advice(exc, option)}"
        ) from exc
    return sock


def _listen_advice(error: OSError, option: str) -> str:
    if error.errno == errno.EADDRINUSE:
        return f"stop the process using it or choose another {option}"
    if error.errno == errno.EACCES:
        return f"run as a user allowed to use that port, or choose another {option}"
    # An unknown name, or an address that is not one of this machine's.
    return "listen on an address of this machine, such as 127.0.0.1 or 0.0.0.0"


def _check_free_ports(settings: Settings) -> None:
    """Fail fast when a listener that starts later would find its port taken.

    The relay and the report listener bind inside the ASGI lifespan, where a
    failure ends in uvicorn's traceback instead of one line.
    """
    listeners = [
        (settings.relay_host, settings.relay_port, "SENDARIX_RELAY_PORT"),
        (
            settings.relay_host,
            settings.relay_implicit_tls_port if settings.relay_port else 0,
            "SENDARIX_RELAY_IMPLICIT_TLS_PORT",
        ),
        (settings.inbound_host, settings.inbound_port, "SENDARIX_INBOUND_PORT"),
    ]
    for host, port, setting in listeners:
        if port != 0:
            _listen(host, port, f"{setting} (0 turns it off)").close()


def _serve(settings: Settings) -> None:
    _warn_about_settings(settings)
    sock = _listen(settings.http_host, settings.http_port)
    _check_free_ports(settings)
    bound_host, bound_port = sock.getsockname()[:2]
    engine = Engine.from_settings(settings, workers=settings.serve_workers)
    app = create_app(engine, manage_engine=True)
    if settings.relay_port != 0:
        run_in_lifespan(app, Relay(engine, settings))
    attach_inbound(app, engine)

    def announce() -> None:
        logger.info(
            "serving",
            extra={
                "action": "serve_started",
                "http": f"{bound_host}:{bound_port}",
                "delivery_mode": str(settings.delivery_mode),
                "workers": settings.serve_workers,
                "event_loop": event_loop.loop_name(settings.event_loop),
            },
        )

    startup = _StartupFailure(app, on_started=announce)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        lifespan="on",
        # httptools, with the request head deadline and size limit.
        http=GuardedHttpProtocol,
        timeout_keep_alive=_HTTP_KEEP_ALIVE_SECONDS,
    )
    _settle_collector()
    try:
        event_loop.run(
            settings.event_loop, uvicorn.Server(config).serve(sockets=[sock])
        )
    except SystemExit:
        # uvicorn exits 3 when the lifespan fails (older releases return
        # instead); a known cause is reported in one line, as the other
        # commands report it.
        if startup.error is not None:
            raise startup.error from None
        raise
    if startup.error is not None:
        raise startup.error


class _StartupFailure:
    """Keeps the ``SendarixError`` that stopped the app's start, if any.

    Starlette hands uvicorn the traceback of a failed start, which uvicorn
    logs. For an error Sendarix raised on purpose, such as a database on an
    older schema or a missing certificate, its message is enough. The app's
    router then reports an empty text instead, and ``serve`` raises
    ``error`` again once uvicorn has stopped. Only the lifespan is wrapped,
    so requests take no extra step.
    """

    def __init__(self, app: Starlette, *, on_started: Callable[[], None]) -> None:
        self.error: SendarixError | None = None
        router = app.router
        lifespan_context = router.lifespan_context
        handle_lifespan = router.lifespan

        @asynccontextmanager
        async def recording(app: Starlette) -> AsyncIterator[None]:
            started = False
            try:
                async with lifespan_context(app):
                    started = True
                    # The database, the relay and every listener are open.
                    on_started()
                    yield
            except SendarixError as exc:
                if not started:
                    self.error = exc
                raise

        async def quiet_lifespan(
            scope: AsgiScope, receive: Receive, send: Send
        ) -> None:
            async def quiet_send(message: Message) -> None:
                if message["type"] == "lifespan.startup.failed" and self.error:
                    message = {"type": "lifespan.startup.failed", "message": ""}
                await send(message)

            await handle_lifespan(scope, receive, quiet_send)

        router.lifespan_context = recording
        # Router.app looks the method up on the instance for each lifespan.
        router.lifespan = quiet_lifespan  # type: ignore[method-assign]


def _settle_collector() -> None:
    """Tune the cyclic garbage collector once the process has started.

    The modules, tables and objects built so far live as long as the
    process. Frozen, they are left out of every later collection: a full
    collection of them took about 70 ms in `serve`, about once a second
    under load, and 37 ms in `worker`. Requests and deliveries in flight
    hold many container objects that reference counting frees when each
    ends. At CPython's default threshold of 700 they set off a young
    collection about every seven requests.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


async def _run_worker(settings: Settings) -> None:
    _warn_about_settings(settings)
    logger.info(
        "worker process started",
        extra={
            "action": "worker_process_started",
            "delivery_mode": str(settings.delivery_mode),
            "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        },
    )
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        # Leaving the engine on SIGTERM drains the deliveries in flight, as
        # `serve` does through uvicorn's shutdown. So does leaving it after a
        # background task failed, before the process exits 1.
        async with (
            Engine.from_settings(settings) as engine,
            anyio.create_task_group() as waiting,
        ):
            _settle_collector()

            async def stop_on_signal() -> None:
                async for _ in signals:
                    waiting.cancel_scope.cancel()
                    return

            waiting.start_soon(stop_on_signal)
            await engine.wait_for_stopped_task()
            waiting.cancel_scope.cancel()
    # Read after the engine has stopped, because a failure during the stop
    # raises instead of being recorded.
    stopped = engine.stopped_tasks
    if stopped:
        raise SendarixError(
            f"{', '.join(stopped)} stopped on an unexpected error (see the log "
            "above); the process exits so that its supervisor restarts it"
        )


def _migrate(settings: Settings) -> None:
    from sendarix_backends.sql.migrate import upgrade

    upgrade(settings.database_url)
    logger.info("schema is up to date", extra={"action": "migrated"})


async def _create_key(settings: Settings, args: Any) -> None:
    body = {
        "name": args.name,
        "scopes": args.scopes or [str(scope) for scope in Scope],
        "environment": str(Environment.TEST if args.test else Environment.LIVE),
        "sender_domains": args.sender_domains,
        "rate_limit": args.rate_limit,
        "expires_at": args.expires_at,
    }
    # The flags get the same checks as POST /v1/api-keys.
    try:
        request = validate_key_request(body, datetime.now(UTC))
    except ValidationError as exc:
        problems = "; ".join(f"{e.field}: {e.message}" for e in exc.errors)
        raise ConfigurationError(f"invalid key options: {problems}") from exc
    async with Engine.from_settings(settings, workers=False) as engine:
        secret, _ = await engine.create_api_key(
            request.name,
            scopes=request.scopes,
            environment=request.environment,
            rate_limit=request.rate_limit,
            sender_domains=request.sender_domains,
            expires_at=request.expires_at,
        )
    print(secret)


if __name__ == "__main__":
    sys.exit(main())
