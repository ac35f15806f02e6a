"""A recording SMTP server on 127.0.0.1 for tests.

It is aiosmtpd running in its own thread, so sync tests, async tests and
other processes (a Sendarix server under test) can all deliver to it. It
records every message and counts connections, and a test can script its
replies, offer STARTTLS or AUTH, stall like a tarpit, or close its port.

    with SmtpServer() as server:
        server.reply_with("451 4.7.1 try later", times=2)
        ...  # deliver to ("127.0.0.1", server.port)
        [message] = server.wait_for_messages(1)
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import socket
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal

import attrs
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = ["ReceivedMessage", "SmtpServer", "Stage"]

Stage = Literal["STARTTLS", "MAIL", "RCPT", "DATA"]

_SERVER_NAME = "mx.sendarix.test"


@attrs.frozen(kw_only=True)
class ReceivedMessage:
    """One accepted message; ``data`` is the content after dot-unstuffing."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes = attrs.field(repr=lambda value: f"<{len(value)} bytes>")
    message_id: str | None
    mail_options: tuple[str, ...]
    tls: bool
    username: str | None
    peer: str | None = None
    """The client's IP address."""
    arrived_at: float = 0.0
    """``time.monotonic()`` when the server accepted the message."""


class SmtpServer:
    """A threaded SMTP server whose behaviour tests change while it runs.

    ``tls_context`` offers STARTTLS with that server context;
    ``implicit_tls_context`` speaks TLS from the first byte instead.
    ``credentials`` (user to password) enables AUTH PLAIN and LOGIN, over TLS
    only unless ``auth_require_tls`` is false. ``smtputf8`` controls whether
    the SMTPUTF8 extension is offered, ``pipelining`` whether PIPELINING
    (RFC 2920) is, and ``eight_bit_mime`` whether 8BITMIME is. ``port`` 0
    picks a free port.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls_context: ssl.SSLContext | None = None,
        credentials: Mapping[str, str] | None = None,
        auth_require_tls: bool = True,
        smtputf8: bool = True,
        pipelining: bool = True,
        eight_bit_mime: bool = True,
        data_size_limit: int = 33_554_432,
    ) -> None:
        self.host = host
        self.port = port
        self._tls_context = tls_context
        self._implicit_tls_context = implicit_tls_context
        self._credentials = dict(credentials) if credentials is not None else None
        self._auth_require_tls = auth_require_tls
        self._smtputf8 = smtputf8
        self._pipelining = pipelining
        self._eight_bit_mime = eight_bit_mime
        self._data_size_limit = data_size_limit
        self._state = _State()
        self._controller: _Controller | None = None
        self._port_holder: socket.socket | None = None

    # What happened

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._state.changed:
            return list(self._state.messages)

    @property
    def connections(self) -> int:
        """TCP connections accepted since start or the last ``reset``."""
        with self._state.changed:
            return self._state.connections

    @property
    def active_sessions(self) -> int:
        with self._state.changed:
            return self._state.active

    @property
    def peak_sessions(self) -> int:
        """The maximum number of sessions open at one time."""
        with self._state.changed:
            return self._state.peak

    def command_count(self, verb: str) -> int:
        """Return how often ``RSET`` or ``NOOP`` was received."""
        with self._state.changed:
            return self._state.commands[verb.upper()]

    def wait_for_messages(
        self, count: int, timeout: float = 10.0
    ) -> list[ReceivedMessage]:
        """Block until ``count`` messages arrived; return them all.

        Raises ``TimeoutError`` naming how many did arrive.
        """
        with self._state.changed:
            arrived = self._state.changed.wait_for(
                lambda: len(self._state.messages) >= count, timeout=timeout
            )
            if not arrived:
                raise TimeoutError(
                    f"expected {count} messages within {timeout} s, "
                    f"received {len(self._state.messages)}"
                )
            return list(self._state.messages)

    def wait_until_idle(self, timeout: float = 10.0) -> None:
        """Block until every session has closed."""
        with self._state.changed:
            closed = self._state.changed.wait_for(
                lambda: self._state.active == 0, timeout=timeout
            )
            if not closed:
                raise TimeoutError(
                    f"{self._state.active} sessions were still open after {timeout} s"
                )

    def reset(self) -> None:
        """Forget messages, counters and scripted replies."""
        with self._state.changed:
            self._state.messages.clear()
            self._state.connections = 0
            self._state.peak = self._state.active
            self._state.commands.clear()
            self._state.replies.clear()
            self._state.rejected.clear()
            self._state.drops = 0
            self._state.data_reply_delay = 0.0

    # Behaviour

    def reply_with(self, reply: str, *, times: int = 1, at: Stage = "DATA") -> None:
        """Answer the next ``times`` commands of stage ``at`` with ``reply``
        (for example ``"451 4.7.1 try later"``), then accept again."""
        with self._state.changed:
            self._state.replies.setdefault(at, deque()).extend([reply] * times)

    def reject_recipient(
        self, address: str, reply: str = "550 5.1.1 no such user"
    ) -> None:
        """Reply to every RCPT TO for ``address`` with ``reply``."""
        with self._state.changed:
            self._state.rejected[address.lower()] = reply

    def drop_after_message(self, *, times: int = 1) -> None:
        """Record the next ``times`` messages, then reset the connection
        instead of replying after the final dot."""
        with self._state.changed:
            self._state.drops += times

    def delay_data_reply(self, seconds: float) -> None:
        """Wait ``seconds`` after each message before replying to it."""
        with self._state.changed:
            self._state.data_reply_delay = seconds

    def tarpit(self, enabled: bool = True) -> None:
        """Accept new connections but never send the greeting."""
        with self._state.changed:
            self._state.tarpit = enabled

    def take_down(self) -> None:
        """Stop listening; connections to the port are refused until
        ``bring_up``. The port stays reserved meanwhile."""
        self._stop_controller()
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Bound but not listening, so the kernel resets every connection attempt.
        holder.bind((self.host, self.port))
        self._port_holder = holder

    def bring_up(self) -> None:
        if self._port_holder is not None:
            self._port_holder.close()
            self._port_holder = None
        self._start_controller()

    # Lifecycle

    def start(self) -> None:
        self._start_controller()

    def stop(self) -> None:
        self._stop_controller()
        if self._port_holder is not None:
            self._port_holder.close()
            self._port_holder = None

    def __enter__(self) -> SmtpServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _start_controller(self) -> None:
        kwargs: dict[str, Any] = {
            "server_hostname": _SERVER_NAME,
            "enable_SMTPUTF8": self._smtputf8,
            "data_size_limit": self._data_size_limit,
            "tls_context": self._tls_context,
            "auth_require_tls": self._auth_require_tls,
        }
        if self._credentials is not None:
            kwargs["authenticator"] = _Authenticator(self._credentials)
        controller = _Controller(
            self._state,
            _Handler(
                self._state,
                pipelining=self._pipelining,
                eight_bit_mime=self._eight_bit_mime,
            ),
            hostname=self.host,
            port=self.port,
            ssl_context=self._implicit_tls_context,
            **kwargs,
        )
        controller.start()
        self.port = controller.port
        self._controller = controller

    def _stop_controller(self) -> None:
        if self._controller is None:
            return
        controller, self._controller = self._controller, None
        controller.loop.call_soon_threadsafe(self._state.close_tarpits)
        controller.stop()


@attrs.define(eq=False)
class _State:
    """Everything the server thread records and the test thread reads."""

    changed: threading.Condition = attrs.field(factory=threading.Condition)
    messages: list[ReceivedMessage] = attrs.field(factory=list)
    connections: int = 0
    active: int = 0
    peak: int = 0
    commands: Counter[str] = attrs.field(factory=Counter)
    replies: dict[str, deque[str]] = attrs.field(factory=dict)
    rejected: dict[str, str] = attrs.field(factory=dict)
    tarpit: bool = False
    tarpits: set[asyncio.BaseTransport] = attrs.field(factory=set)
    # Messages still to be recorded and then followed by a reset connection.
    drops: int = 0
    # Seconds to wait before replying after the final dot.
    data_reply_delay: float = 0.0

    def session_opened(self) -> None:
        with self.changed:
            self.connections += 1
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.changed.notify_all()

    def session_closed(self) -> None:
        with self.changed:
            self.active -= 1
            self.changed.notify_all()

    def scripted_reply(self, stage: Stage) -> str | None:
        with self.changed:
            queue = self.replies.get(stage)
            return queue.popleft() if queue else None

    def close_tarpits(self) -> None:
        for transport in list(self.tarpits):
            transport.close()


class _Handler:
    """aiosmtpd hooks: scripted replies first, then record and accept."""

    def __init__(
        self, state: _State, *, pipelining: bool, eight_bit_mime: bool
    ) -> None:
        self._state = state
        self._pipelining = pipelining
        self._eight_bit_mime = eight_bit_mime

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self._pipelining:
            # aiosmtpd reads one command at a time, so pipelined commands
            # are answered in order; it just doesn't advertise the extension.
            responses.insert(1, "250-PIPELINING")
        if not self._eight_bit_mime:
            responses = [line for line in responses if "8BITMIME" not in line]
        return responses

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        reply = self._state.scripted_reply("MAIL")
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        with self._state.changed:
            rejection = self._state.rejected.get(address.lower())
        reply = rejection or self._state.scripted_reply("RCPT")
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        reply = self._state.scripted_reply("DATA")
        if reply is not None:
            return reply

        data = envelope.original_content or b""
        message = ReceivedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=data,
            message_id=_message_id(data),
            mail_options=tuple(envelope.mail_options),
            tls=_uses_tls(server, session),
            username=session.auth_data if session.authenticated else None,
            peer=str(session.peer[0]) if session.peer else None,
            arrived_at=time.monotonic(),
        )
        with self._state.changed:
            self._state.messages.append(message)
            self._state.changed.notify_all()
            drop = self._state.drops > 0
            self._state.drops -= drop
            delay = self._state.data_reply_delay
        if delay:
            await asyncio.sleep(delay)
        if drop and server.transport is not None:
            # abort() rather than close(): the reply below must not go out.
            server.transport.abort()
        return "250 2.0.0 OK queued"

    async def handle_RSET(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        with self._state.changed:
            self._state.commands["RSET"] += 1
        return "250 2.0.0 OK"

    async def handle_NOOP(
        self, server: SMTP, session: Session, envelope: Envelope, arg: str
    ) -> str:
        with self._state.changed:
            self._state.commands["NOOP"] += 1
        return "250 2.0.0 OK"


class _Authenticator:
    def __init__(self, credentials: Mapping[str, str]) -> None:
        self._credentials = credentials

    def __call__(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        username = auth_data.login.decode()
        password = auth_data.password.decode()
        if self._credentials.get(username) != password:
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=username)


class _CountingSMTP(SMTP):
    """An aiosmtpd session that reports when it opens and closes."""

    def __init__(self, handler: _Handler, state: _State, counted: bool, **kwargs: Any):
        super().__init__(handler, **kwargs)
        self._state = state
        self._counted = counted
        self._open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # STARTTLS calls this a second time for the same connection.
        is_new = self.transport is None
        super().connection_made(transport)
        if is_new and self._counted:
            self._open = True
            self._state.session_opened()

    async def smtp_STARTTLS(self, arg: str) -> None:
        reply = self._state.scripted_reply("STARTTLS")
        if reply is not None:
            await self.push(reply)
            return
        await super().smtp_STARTTLS(arg)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        if self._open:
            self._open = False
            self._state.session_closed()


class _Tarpit(asyncio.Protocol):
    """Accepts a connection and stays silent."""

    def __init__(self, state: _State) -> None:
        self._state = state
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._state.tarpits.add(transport)
        self._state.session_opened()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._state.tarpits.discard(self._transport)
        self._state.session_closed()


class _Controller(Controller):
    """aiosmtpd's controller, bound to a free port when ``port`` is 0."""

    def __init__(self, state: _State, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._state = state
        self._ready = False

    def factory(self) -> asyncio.Protocol:
        # The controller opens one connection of its own while it starts;
        # sessions created before start() returns are not counted.
        with self._state.changed:
            tarpit = self._state.tarpit
        if tarpit and self._ready:
            return _Tarpit(self._state)
        return _CountingSMTP(
            self.handler, self._state, counted=self._ready, **self.SMTP_kwargs
        )

    def _create_server(self) -> Any:
        return self._bind()

    async def _bind(self) -> asyncio.AbstractServer:
        server = await self.loop.create_server(
            self._factory_invoker,
            host=self.hostname,
            port=self.port,
            ssl=self.ssl_context,
        )
        self.port = server.sockets[0].getsockname()[1]
        return server

    def start(self) -> None:
        super().start()
        self._ready = True


def _uses_tls(server: SMTP, session: Session) -> bool:
    # session.ssl is set only by STARTTLS; implicit TLS shows on the transport.
    transport = server.transport
    sslcontext = transport.get_extra_info("sslcontext") if transport else None
    return session.ssl is not None or sslcontext is not None


def _message_id(data: bytes) -> str | None:
    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(
        data
    )
    value = headers.get("Message-ID")
    return str(value).strip() if value is not None else None
