"""The engine: submission, queries and delivery workers over the backends.

``Engine`` is what an integrator embeds and what ``sendarix serve`` runs. It
composes a store, a queue and a transport chosen by the plugin hooks, and
applies the core's decisions. It keeps no state that a restart would lose.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

import anyio
import attrs
import pluggy

from sendarix_backends.batch import BatchResult, send_batch
from sendarix_backends.batching import GroupCommitter
from sendarix_backends.content import Content
from sendarix_backends.delivery import DeliveryWorker
from sendarix_backends.delivery_control import DeliveryControl
from sendarix_backends.events.services import build_event_services
from sendarix_backends.outbound import Outbound
from sendarix_backends.randomness import random_bytes
from sendarix_backends.settings import Settings
from sendarix_backends.submission_raw import prepare_raw_batch, submit_raw_batch
from sendarix_core import lifecycle
from sendarix_core.addresses import AddressError, parse_address
from sendarix_core.clock import Clock, SystemClock
from sendarix_core.errors import (
    ConfigurationError,
    FieldError,
    IdempotencyConflictError,
    MessageNotCancellableError,
    NotFoundError,
    StorageError,
    ValidationError,
)
from sendarix_core.idempotency import IdempotencyRecord, request_fingerprint
from sendarix_core.ids import MonotonicIds
from sendarix_core.key_requests import validate_key_request
from sendarix_core.keys import (
    ApiKey,
    Environment,
    Scope,
    check_key,
    format_key,
    hash_key,
)
from sendarix_core.model import Event, Message
from sendarix_core.ports import (
    BatchSubmission,
    MessageQuery,
    MessageQueue,
    MessageStore,
    Page,
    Submission,
    SubmitOutcome,
    SuppressionQuery,
    Transport,
    WebhookSender,
)
from sendarix_core.ratelimit import (
    RateLimitDecision,
    decide_rate_limit,
    window_start,
)
from sendarix_core.representation import accepted_response
from sendarix_core.submission import new_message
from sendarix_core.suppression import (
    Suppression,
    SuppressionReason,
    check_reason,
    normalize_recipient,
)
from sendarix_core.validation import (
    IDEMPOTENCY_KEY_HEADER,
    validate_idempotency_key,
    validate_send_request,
)

__all__ = ["Engine", "SendResult"]

logger = logging.getLogger("sendarix.engine")

# How long shutdown waits for deliveries in flight before cancelling them.
SHUTDOWN_GRACE_SECONDS = 10.0

# The owner of idempotency keys submitted through the library without an API key.
LIBRARY_KEY_ID = "library"

# Raw messages up to this size are read on the event loop, and larger ones
# in a worker thread. An address header at the limits of raw_message takes
# an estimated 8 ms to parse (3.5 ms measured for 900 characters of 20
# mailboxes, CPython 3.11), so 8 KiB of them stay near 30 ms.
_INLINE_RAW_MESSAGE_BYTES = 8192


@attrs.frozen(kw_only=True)
class SendResult:
    """The response to a submission: the ``202`` body, and whether it is a replay."""

    message_id: str
    status: str
    response: Mapping[str, Any]
    replayed: bool = False


class Engine:
    """Accepts, stores, queues and delivers messages.

    Use it as an async context manager. With ``workers=True`` (the default)
    delivery workers run in the background until the context exits::

        settings = Settings(database_url="sqlite:///app.db")
        async with Engine.from_settings(settings) as engine:
            result = await engine.send({"recipient": ..., "from": ..., ...})
    """

    def __init__(
        self,
        *,
        settings: Settings,
        store: MessageStore,
        queue: MessageQueue,
        transport: Transport,
        sink: Transport,
        clock: Clock | None = None,
        workers: bool = True,
        webhook_sender: WebhookSender | None = None,
        create_schema: bool = True,
    ) -> None:
        self.settings = settings
        self._create_schema = create_schema
        self.store = store
        self.queue = queue
        self.clock = clock or SystemClock()
        self._run_workers = workers
        self._stopped_tasks: list[str] = []
        # One shielded scope per background task: a cancelled caller's scope
        # does not reach the tasks, which __aexit__ stops itself, waiting for
        # the reply to content already sent, or the message would go out twice.
        self._background_scopes: list[anyio.CancelScope] = []
        self._task_stopped: anyio.Event | None = None
        self._stopping = False
        self._ids = MonotonicIds()
        self.content = Content.for_store(store, settings=settings, clock=self.clock)
        self.outbound = Outbound(
            transport=transport,
            sink=sink,
            return_path_domain=settings.return_path_domain,
            signer=self.content,
        )
        self._submissions: GroupCommitter[Submission, SubmitOutcome] = GroupCommitter(
            self._create_batch
        )
        # Routing rules, destination pacing and queue control.
        self.control = DeliveryControl.for_store(
            store,
            settings=settings,
            clock=self.clock,
            new_id=self.new_id,
            transport=transport,
            sink=sink,
        )
        self.worker = DeliveryWorker(
            store=store,
            queue=queue,
            outbound=self.outbound,
            clock=self.clock,
            new_id=self.new_id,
            settings=settings,
            control=self.control,
        )
        # Event search, webhooks, report intake and analytics; None unless
        # the store is the SQL backend.
        self.events = build_event_services(
            store=store,
            settings=settings,
            clock=self.clock,
            new_id=self.new_id,
            sender=webhook_sender,
        )
        # Without event services nothing posts webhooks; the sender is only
        # closed at the end.
        self._unused_sender = webhook_sender if self.events is None else None
        self._task_group: anyio.abc.TaskGroup | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        plugin_manager: pluggy.PluginManager | None = None,
        clock: Clock | None = None,
        workers: bool = True,
        create_schema: bool = True,
    ) -> Engine:
        """Build an engine whose backends the plugin hooks choose.

        With ``create_schema`` false, entering the engine raises
        ``StorageError`` for a database without the schema (or a SQLite file
        that does not exist) instead of creating it.
        """
        from sendarix_backends.plugins import get_plugin_manager
        from sendarix_backends.smtp import SinkTransport
        from sendarix_backends.sql.engine import masked_url

        settings = settings or Settings()
        manager = plugin_manager or get_plugin_manager()
        store = manager.hook.sendarix_storage(settings=settings)
        if store is None:
            raise StorageError(
                "no storage plugin handles SENDARIX_DATABASE_URL "
                f"{masked_url(settings.database_url)}; use sqlite:///path or "
                "postgresql://user:password@host/name, or install a plugin"
            )
        queue = manager.hook.sendarix_queue(settings=settings, storage=store)
        if queue is None:
            raise StorageError(
                f"no queue plugin works with the storage {type(store).__name__}"
            )
        transport = manager.hook.sendarix_transport(settings=settings)
        _check_hook_result("sendarix_transport", transport, ("deliver", "aclose"))
        sender = manager.hook.sendarix_webhook_sender(settings=settings)
        if sender is not None:
            _check_hook_result("sendarix_webhook_sender", sender, ("post", "aclose"))
        return cls(
            settings=settings,
            store=store,
            queue=queue,
            transport=transport,
            sink=SinkTransport(),
            clock=clock,
            workers=workers,
            webhook_sender=sender,
            create_schema=create_schema,
        )

    async def __aenter__(self) -> Self:
        opener = getattr(self.store, "open", None)
        if opener is not None and self._create_schema:
            await opener()
        elif opener is not None:
            if "create" not in inspect.signature(opener).parameters:
                raise ConfigurationError(
                    f"the storage plugin's {type(self.store).__name__}.open() "
                    "takes no create argument, so this command could create "
                    "its schema; update the plugin (see docs/plugins.md)"
                )
            await opener(create=False)
        if self._run_workers:
            self._task_stopped = anyio.Event()
            self._task_group = anyio.create_task_group()
            await self._task_group.__aenter__()
            try:
                await self._task_group.start(
                    self._run_background, "delivery worker", self.worker.run
                )
                if self.events is not None:
                    await self._task_group.start(
                        self._run_background, "event processing", self.events.run
                    )
            except BaseException:
                # A start that failed or was cancelled still leaves the task
                # group and the connections to close.
                await self.__aexit__(*sys.exc_info())
                raise
            # Shielded only now: a start cancelled with the caller must end,
            # or the task group's start() would wait for it forever.
            for scope in self._background_scopes:
                scope.shield = True
        return self

    @property
    def stopped_tasks(self) -> tuple[str, ...]:
        """The names of the background tasks that ended on an unexpected error.

        Database errors are logged and retried inside each task. Anything
        else ends the task for good, and the process should be restarted.
        """
        return tuple(self._stopped_tasks)

    async def wait_for_stopped_task(self) -> None:
        """Wait until a background task ends on an unexpected error.

        Without background tasks, wait until cancelled.
        """
        if self._task_stopped is None:
            await anyio.sleep_forever()
        else:
            await self._task_stopped.wait()

    async def _run_background(
        self,
        name: str,
        run: Callable[..., Awaitable[None]],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run ``run`` until cancelled, and record ``name`` if it fails.

        A failure before the task has started still fails the engine's start,
        and one while the engine stops still reaches the caller of
        ``__aexit__``. Otherwise the other background tasks and the caller's
        work go on.
        """
        status = _StartSignal(task_status)
        try:
            # __aenter__ shields the scope once every task has started.
            with anyio.CancelScope() as scope:
                self._background_scopes.append(scope)
                await run(task_status=status)
        except Exception:
            if not status.started_once or self._stopping:
                raise
            self._stopped_tasks.append(name)
            if self._task_stopped is not None:
                self._task_stopped.set()
            logger.critical(
                "%s stopped on an unexpected error; restart the process",
                name,
                exc_info=True,
                extra={"action": "task_failed", "task": name},
            )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._task_group is not None:
                task_group, self._task_group = self._task_group, None
                self._stopping = True
                await self._stop_workers(task_group, exc_type, exc, traceback)
        finally:
            # Shielded: when the caller's scope was cancelled, the first
            # await would otherwise end the cleanup with every connection open.
            with anyio.CancelScope(shield=True):
                await self._close_all()

    async def _close_all(self) -> None:
        """Close every part, also after one fails; then raise the first error.

        A plugin whose ``aclose`` raises would otherwise leave the database
        connections after it open.
        """
        parts: list[tuple[str, Any]] = [("delivery worker", self.worker)]
        if self.events is not None:
            parts.append(("event processing", self.events))
        if self._unused_sender is not None:
            parts.append(("webhook sender", self._unused_sender))
        parts.append(("storage", self.store))
        if self.queue is not self.store:  # type: ignore[comparison-overlap]
            parts.append(("queue", self.queue))
        first: Exception | None = None
        for name, part in parts:
            try:
                await part.aclose()
            except Exception as exc:
                logger.exception(
                    "closing the %s failed",
                    name,
                    extra={"action": "close_failed", "part": name},
                )
                first = first or exc
        if first is not None:
            raise first

    async def _stop_workers(
        self,
        task_group: anyio.abc.TaskGroup,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Let deliveries in flight finish for a while, then cancel the rest
        and make their messages claimable at once.

        Deliveries whose content went out are waited for up to the SMTP
        timeout more: the server may have taken such a message, and another
        worker would send it again.
        """
        logger.info("worker stopping", extra={"action": "worker_stopping"})
        stop_started = time.monotonic()
        dispatcher = None if self.events is None else self.events.dispatcher
        self.worker.stop_claiming()
        if dispatcher is not None:
            dispatcher.stop_claiming()
        with anyio.move_on_after(SHUTDOWN_GRACE_SECONDS, shield=True):
            await self.worker.drain()
        self.worker.stop_sending()
        with anyio.move_on_after(self.settings.smtp_timeout, shield=True):
            await self.worker.drain_sent()
        abandoned_posts: list[str] = []
        if dispatcher is not None:
            # One post takes at most the webhook timeout, so waiting that
            # long from the stop lets every post in flight end.
            waited = time.monotonic() - stop_started
            left = max(self.settings.webhook_timeout - waited, 0)
            with anyio.move_on_after(left, shield=True):
                await dispatcher.drain()
            abandoned_posts = dispatcher.in_flight()
        abandoned = self.worker.in_flight()
        for scope in self._background_scopes:
            scope.cancel()
        self._background_scopes.clear()
        task_group.cancel_scope.cancel()
        # The caller's own exception is not handed to the task group, which
        # would wrap it in an ExceptionGroup: it leaves the ``async with``
        # as raised, so ``except NotFoundError`` around the block still works.
        # Shielded, so a cancelled caller's scope can't replace that exception
        # with its cancellation while the cancelled tasks end.
        task_group.cancel_scope.shield = True
        await task_group.__aexit__(None, None, None)
        with anyio.CancelScope(shield=True):
            try:
                await self.worker.release(abandoned)
            except StorageError:
                logger.exception(
                    "releasing leases failed; they expire on their own",
                    extra={"action": "release_failed"},
                )
            if dispatcher is not None and abandoned_posts:
                try:
                    await dispatcher.release(abandoned_posts)
                except StorageError:
                    logger.exception(
                        "releasing webhook leases failed; they expire on their own",
                        extra={"action": "release_failed"},
                    )
        logger.info(
            "worker stopped",
            extra={
                "action": "worker_stopped",
                "abandoned": len(abandoned),
                "abandoned_webhooks": len(abandoned_posts),
            },
        )

    def new_id(self, prefix: str) -> str:
        return self._ids.new_id(prefix, self.clock.now(), random_bytes(10))

    # Submission

    async def send(
        self,
        body: Mapping[str, Any],
        *,
        api_key: ApiKey | None = None,
        idempotency_key: str | None = None,
    ) -> SendResult:
        """Validate and durably queue one message.

        ``idempotency_key`` is the ``Idempotency-Key`` HTTP header, if any;
        ``headers["X-Idempotency-Key"]`` in the body works the same way.
        Raises ``ValidationError`` (every invalid field at once) or
        ``IdempotencyConflictError``. Returns only after the commit.
        """
        submission = await self.prepare_submission(
            body,
            api_key=api_key,
            idempotency_key=idempotency_key,
            now=self.clock.now(),
        )
        outcome = await self._submissions.submit(submission)

        if outcome.conflict:
            key = submission.idempotency.key if submission.idempotency else ""
            raise IdempotencyConflictError(key, None)
        if outcome.replay is not None:
            replayed = outcome.replay.response
            return SendResult(
                message_id=str(replayed["message_id"]),
                status=str(replayed["status"]),
                response=replayed,
                replayed=True,
            )
        self.worker.wake()
        message = submission.transition.after
        return SendResult(
            message_id=message.id,
            status=str(message.status),
            response=accepted_response(message),
        )

    async def send_batch(
        self,
        body: Mapping[str, Any],
        *,
        api_key: ApiKey | None = None,
        idempotency_key: str | None = None,
    ) -> BatchResult:
        """Validate and durably queue up to 500 messages in one commit.

        See ``sendarix_backends.batch.send_batch`` for the modes and results.
        """
        if not isinstance(body, Mapping):
            raise TypeError(
                "send_batch takes the request body, {'messages': [...]}, not "
                f"{type(body).__name__}"
            )
        return await send_batch(
            self, body, api_key=api_key, idempotency_key=idempotency_key
        )

    async def send_raw(
        self,
        data: bytes,
        *,
        mail_from: str,
        recipients: Sequence[str],
        api_key: ApiKey | None = None,
    ) -> list[SendResult]:
        """Durably queue a finished RFC 5322 message, one message per recipient.

        ``data`` uses CRLF line ends, as after SMTP ``DATA``, and lines of at
        most 998 bytes (RFC 5322).
        ``sendarix_backends.submission_raw`` describes the headers it reads
        and how an idempotency key applies. Raises ``ValidationError`` or
        ``IdempotencyConflictError``. Returns after the commit, one result
        per recipient in their order.
        """
        if not isinstance(data, bytes | bytearray):
            raise TypeError(
                f"send_raw takes the message as bytes, not {type(data).__name__}; "
                "encode a str first"
            )
        if isinstance(recipients, str):
            raise TypeError(
                "recipients must be a list of addresses, not one string; "
                f"write [{recipients!r}]"
            )
        prepare = functools.partial(
            prepare_raw_batch,
            bytes(data),
            mail_from=mail_from,
            recipients=recipients,
            now=self.clock.now(),
            new_id=self.new_id,
            api_key=api_key,
            idempotency_owner=api_key.id if api_key else LIBRARY_KEY_ID,
        )
        if len(data) <= _INLINE_RAW_MESSAGE_BYTES:
            batch = prepare()
        else:
            # Reading a large header section takes long enough to stall
            # every other session and request on the event loop.
            batch = await anyio.to_thread.run_sync(prepare)
        # Every refused sender is reported, not only the first.
        sender_errors: list[FieldError] = []
        for sender in batch.senders:
            try:
                self._check_sender_domain(api_key, sender.domain)
                await self.content.domains.check_sender(sender)
            except ValidationError as error:
                sender_errors.extend(e for e in error.errors if e not in sender_errors)
        if sender_errors:
            raise ValidationError(sender_errors)
        outcomes = await submit_raw_batch(
            batch,
            submit_one=self._submissions.submit,
            submit_all=self._create_all_or_nothing,
        )
        if any(outcome.conflict for outcome in outcomes):
            raise IdempotencyConflictError(batch.idempotency_key or "", None)

        results = []
        for submission, outcome in zip(batch.submissions, outcomes, strict=True):
            replay = outcome.replay
            if replay is not None:
                response = replay.response
            else:
                response = accepted_response(submission.transition.after)
            results.append(
                SendResult(
                    message_id=str(response["message_id"]),
                    status=str(response["status"]),
                    response=response,
                    replayed=replay is not None,
                )
            )
        self.worker.wake()
        return results

    async def prepare_submission(
        self,
        body: Mapping[str, Any],
        *,
        api_key: ApiKey | None,
        idempotency_key: str | None,
        now: datetime,
    ) -> Submission:
        """Validate one message body and build the submission that stores it.

        Raises ``ValidationError`` listing the invalid fields. Stores nothing.
        """
        request = validate_send_request(
            body, now=now, default_sender=self.settings.default_sender
        )
        key = _merge_idempotency_keys(idempotency_key, request.idempotency_key)
        self._check_sender_domain(api_key, request.sender.domain)
        message_id = self.new_id("msg")
        content = await self.content.accept(request, message_id=message_id)

        transition = new_message(
            request,
            message_id=message_id,
            event_id=self.new_id("evt"),
            now=now,
            api_key=api_key,
            content=content,
        )
        record = None
        if key is not None:
            record = IdempotencyRecord(
                api_key_id=api_key.id if api_key else LIBRARY_KEY_ID,
                key=key,
                fingerprint=request_fingerprint(_without_idempotency_key(body)),
                status_code=202,
                response=accepted_response(transition.after),
                created_at=now,
            )
        return Submission(transition=transition, idempotency=record)

    async def _create_batch(
        self, submissions: Sequence[Submission]
    ) -> list[SubmitOutcome]:
        return await self.store.create_messages(submissions, self.clock.now())

    async def _create_all_or_nothing(
        self, submissions: Sequence[Submission]
    ) -> Sequence[SubmitOutcome]:
        # A conflict on one submission rolls all of them back, so a
        # transaction refused after DATA stores nothing.
        batch = BatchSubmission(
            submissions=submissions, respond=lambda _: {}, all_or_nothing=True
        )
        outcome = await self.store.create_batch(batch, self.clock.now())
        return outcome.outcomes

    def _check_sender_domain(self, api_key: ApiKey | None, domain: str) -> None:
        if api_key is None or not api_key.sender_domains:
            return
        if domain.lower() in api_key.sender_domains:
            return
        allowed = ", ".join(api_key.sender_domains)
        raise ValidationError(
            [
                FieldError(
                    "from",
                    "sender_domain_not_allowed",
                    f"the API key may send only from {allowed}, not from {domain!r}",
                )
            ]
        )

    # Messages

    async def get_message(self, message_id: str) -> Message:
        _check_string("message_id", message_id)
        message = await self.store.get_message(message_id)
        if message is None:
            raise NotFoundError("message", message_id)
        return message

    async def list_messages(self, query: MessageQuery) -> Page[Message]:
        _check_instance("list_messages", query, MessageQuery)
        return await self.store.list_messages(query)

    async def list_events(self, message_id: str) -> list[Event]:
        await self.get_message(message_id)
        return await self.store.list_message_events(message_id)

    async def cancel(self, message_id: str) -> Message:
        """Cancel a scheduled or queued message.

        Raises ``MessageNotCancellableError`` once a worker has started it.
        A worker may claim the message while this runs; the version check
        then makes one side lose, and the loop reads the message again.
        """
        for _ in range(5):
            message = await self.get_message(message_id)
            transition = lifecycle.cancel(
                message, now=self.clock.now(), event_id=self.new_id("evt")
            )
            stale = await self.store.save_transitions([transition])
            if not stale:
                return transition.after
        raise MessageNotCancellableError(message_id, "accepted")

    # Suppressions

    async def suppress(
        self,
        recipient: str,
        reason: SuppressionReason | str = SuppressionReason.MANUAL,
    ) -> Suppression:
        """Add ``recipient`` to the suppression list, or return its entry.

        Raises ``ValidationError`` for an invalid address or reason.
        """
        address = _checked_recipient(recipient)
        entry = Suppression(
            recipient=normalize_recipient(address),
            reason=check_reason(reason),
            created_at=self.clock.now(),
        )
        return await self.store.add_suppression(entry)

    async def get_suppression(self, recipient: str) -> Suppression:
        _check_string("recipient", recipient)
        normalized = normalize_recipient(recipient)
        found = await self.store.get_suppressions([normalized])
        if normalized not in found:
            raise NotFoundError("suppression", recipient)
        return found[normalized]

    async def list_suppressions(self, query: SuppressionQuery) -> Page[Suppression]:
        _check_instance("list_suppressions", query, SuppressionQuery)
        return await self.store.list_suppressions(query)

    async def unsubscribe(
        self, recipient: str, *, message_id: str | None = None
    ) -> Suppression:
        """Suppress ``recipient`` as ``user_unsubscribed`` and record the
        ``recipient.unsubscribed`` event, in one commit.

        A recipient already unsubscribed keeps its entry and gets no second
        event. ``message_id`` names the message the unsubscribe came from.
        Raises ``ValidationError`` for an invalid address.
        """
        recipient = _checked_recipient(recipient)
        if self.events is None:
            # NOTE: stores other than the SQL backend have no event log, so
            # the unsubscribe is stored without its event.
            return await self.suppress(recipient, SuppressionReason.USER_UNSUBSCRIBED)
        return await self.events.unsubscribe(recipient, message_id=message_id)

    async def unsuppress(self, recipient: str) -> None:
        _check_string("recipient", recipient)
        if not await self.store.remove_suppression(normalize_recipient(recipient)):
            raise NotFoundError("suppression", recipient)

    # API keys

    async def create_api_key(
        self,
        name: str,
        *,
        scopes: Iterable[Scope | str] | None = None,
        environment: Environment | str = Environment.LIVE,
        rate_limit: int | None = None,
        sender_domains: Sequence[str] = (),
        expires_at: datetime | None = None,
    ) -> tuple[str, ApiKey]:
        """Create a key; return the secret (shown once) and the stored record.

        The arguments are checked as ``POST /v1/api-keys`` checks its body:
        ``ValidationError`` lists every bad one. ``scopes`` and
        ``environment`` may be given as their names, such as ``"admin"``.
        """
        now = self.clock.now()
        request = validate_key_request(
            {
                "name": name,
                "scopes": _as_list(scopes) if scopes is not None else list(Scope),
                "environment": environment,
                "sender_domains": _as_list(sender_domains),
                "rate_limit": rate_limit,
                "expires_at": (
                    expires_at.isoformat()
                    if isinstance(expires_at, datetime)
                    else expires_at
                ),
            },
            now,
        )
        secret = format_key(request.environment, os.urandom(32))
        key = ApiKey(
            id=self.new_id("key"),
            name=request.name,
            key_hash=hash_key(secret),
            prefix=secret[:12],
            scopes=request.scopes,
            environment=request.environment,
            created_at=now,
            sender_domains=request.sender_domains,
            rate_limit=request.rate_limit,
            expires_at=request.expires_at,
        )
        await self.store.create_api_key(key)
        return secret, key

    async def list_api_keys(self) -> list[ApiKey]:
        """Return every key, revoked and expired ones included, oldest first."""
        return await self.store.list_api_keys()

    async def get_api_key(self, key_id: str) -> ApiKey:
        _check_string("key_id", key_id)
        key = await self.store.get_api_key(key_id)
        if key is None:
            raise NotFoundError("api_key", key_id)
        return key

    async def revoke_api_key(self, key_id: str) -> ApiKey:
        """Revoke a key; every node refuses it from its next request on.

        Revoking a revoked key changes nothing and returns it.
        """
        _check_string("key_id", key_id)
        key = await self.store.revoke_api_key(key_id, self.clock.now())
        if key is None:
            raise NotFoundError("api_key", key_id)
        return key

    async def authenticate(self, secret: str) -> ApiKey:
        """Return the key for ``secret``; raise ``AuthenticationError`` if unusable."""
        _check_string("secret", secret)
        presented = hash_key(secret)
        key = await self.store.find_api_key(presented)
        return check_key(key, presented, self.clock.now())

    async def authenticate_and_count(
        self, secret: str
    ) -> tuple[ApiKey, RateLimitDecision]:
        """Authenticate ``secret`` and count the request against the key's limit.

        Does what ``authenticate`` and then ``check_rate_limit`` do. A store
        that has ``find_and_count_request`` does both in one transaction,
        shared by concurrent requests. Raises ``AuthenticationError`` for an
        unknown, revoked or expired key, whose request is not counted.
        """
        find_and_count = getattr(self.store, "find_and_count_request", None)
        if find_and_count is None:
            key = await self.authenticate(secret)
            return key, await self.check_rate_limit(key)
        presented = hash_key(secret)
        now = self.clock.now()
        found, count = await find_and_count(presented, now)
        key = check_key(found, presented, now)
        return key, decide_rate_limit(count, key.rate_limit, now)

    async def check_rate_limit(self, key: ApiKey) -> RateLimitDecision:
        """Count a request of ``key`` and decide it.

        The first request of each window also records the key's last use,
        which costs one write per key a minute rather than one per request.
        """
        now = self.clock.now()
        count = await self.store.count_request(key.id, window_start(now))
        if count == 1:
            await self.store.touch_api_key(key.id, now)
        return decide_rate_limit(count, key.rate_limit, now)

    # Delivery

    async def deliver_due(self) -> int:
        """Claim one batch of due messages and deliver it to the end.

        For tests and scripts that drive time with a manual clock; the
        background workers do the same continuously.
        """
        return await self.worker.run_once()

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_seconds)


def _merge_idempotency_keys(header_key: str | None, body_key: str | None) -> str | None:
    if header_key is not None:
        header_key = validate_idempotency_key(header_key)
    if header_key is not None and body_key is not None and header_key != body_key:
        raise ValidationError(
            [
                FieldError(
                    "headers.X-Idempotency-Key",
                    "idempotency_key_mismatch",
                    "the Idempotency-Key HTTP header and headers.X-Idempotency-Key "
                    "differ; send one key",
                )
            ]
        )
    return header_key if header_key is not None else body_key


def _without_idempotency_key(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return ``body`` without the key itself, so moving the key between the
    HTTP header and ``headers`` does not count as another request body."""
    headers = body.get("headers")
    if not isinstance(headers, Mapping):
        return body
    kept = {
        name: value
        for name, value in headers.items()
        if str(name).lower() != IDEMPOTENCY_KEY_HEADER
    }
    if kept:
        return {**body, "headers": kept}
    return {name: value for name, value in body.items() if name != "headers"}


class _StartSignal:
    """A task status that remembers whether the task reported its start."""

    def __init__(self, status: anyio.abc.TaskStatus[None]) -> None:
        self._status = status
        self.started_once = False

    def started(self, value: None = None) -> None:
        self.started_once = True
        self._status.started(value)


def _check_hook_result(hook: str, result: object, methods: tuple[str, ...]) -> None:
    """Raise ``ConfigurationError`` if a plugin's backend lacks ``methods``."""
    missing = [name for name in methods if not callable(getattr(result, name, None))]
    if result is None or missing:
        raise ConfigurationError(
            f"the {hook} hook returned {result!r}, which has no "
            f"{' or '.join(missing or methods)} method; check the plugin that "
            "implements it (docs/plugins.md lists what each hook returns)"
        )


def _as_list(values: object) -> object:
    """Return a collection as a list, and anything else (a string) unchanged,
    so that the check reports it instead of reading it letter by letter."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        return values
    return list(values)


def _check_string(field: str, value: object) -> None:
    """Raise ``ValidationError`` unless ``value`` is a string, as ids are."""
    if not isinstance(value, str):
        message = f"expected a string, got {type(value).__name__} {value!r:.60}"
        raise ValidationError([FieldError(field, "invalid_type", message)])


def _check_instance(method: str, value: object, expected: type) -> None:
    if not isinstance(value, expected):
        raise TypeError(
            f"{method} takes a {expected.__name__}, not {type(value).__name__}"
        )


def _checked_recipient(recipient: object) -> str:
    """Return the address in ``recipient``; raise ``ValidationError`` if invalid."""
    if not isinstance(recipient, str):
        message = f"expected an address such as 'user@example.com', got {recipient!r}"
        raise ValidationError([FieldError("recipient", "invalid_type", message)])
    try:
        return parse_address(recipient).email
    except AddressError as error:
        raise ValidationError(
            [FieldError("recipient", error.code, str(error))]
        ) from None
