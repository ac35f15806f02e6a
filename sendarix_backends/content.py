"""What a message says and who may sign it: templates, domains, unsubscribe.

``Content`` is the engine's one entry point to these features. At
acceptance it checks the sender's domain, renders the template and adds
the List-Unsubscribe fields, so the stored message holds finished text. At
delivery it DKIM-signs the built message.
"""

from __future__ import annotations

import logging

import attrs

from sendarix_backends.domains import Domains, DomainStore, MemoryDomainStore
from sendarix_backends.settings import Settings
from sendarix_backends.templates import MemoryTemplateStore, Templates, TemplateStore
from sendarix_backends.unsubscribe import (
    MemorySecretStore,
    SecretStore,
    UnsubscribeLinks,
)
from sendarix_core.clock import Clock
from sendarix_core.errors import FieldError, ValidationError
from sendarix_core.model import Message, MessageContent
from sendarix_core.ports import MessageStore
from sendarix_core.validation import SendRequest

__all__ = ["Content"]

logger = logging.getLogger("sendarix.content")


class Content:
    def __init__(
        self,
        *,
        templates: Templates,
        domains: Domains,
        unsubscribe_links: UnsubscribeLinks,
    ) -> None:
        self.templates = templates
        self.domains = domains
        self.unsubscribe_links = unsubscribe_links

    @classmethod
    def for_store(
        cls, store: MessageStore, *, settings: Settings, clock: Clock
    ) -> Content:
        """Keep templates, domains and secrets in ``store``'s database.

        A store other than the built-in SQL one gets in-memory tables, which
        a restart empties.
        """
        template_store: TemplateStore
        domain_store: DomainStore
        secret_store: SecretStore
        from sendarix_backends.sql import SqlStore

        if isinstance(store, SqlStore):
            from sendarix_backends.sql.domains import SqlDomainStore
            from sendarix_backends.sql.secrets import SqlSecretStore
            from sendarix_backends.sql.templates import SqlTemplateStore

            template_store = SqlTemplateStore(store)
            domain_store = SqlDomainStore(store)
            secret_store = SqlSecretStore(store)
        else:
            logger.info(
                "templates and sending domains are kept in memory",
                extra={"action": "content_in_memory", "store": type(store).__name__},
            )
            template_store = MemoryTemplateStore()
            domain_store = MemoryDomainStore()
            secret_store = MemorySecretStore()
        return cls(
            templates=Templates(template_store, clock=clock),
            domains=Domains(domain_store, settings=settings, clock=clock),
            unsubscribe_links=UnsubscribeLinks(
                secret_store, public_url=settings.public_url, clock=clock
            ),
        )

    async def accept(self, request: SendRequest, *, message_id: str) -> MessageContent:
        """Return the content to store for ``request``.

        Raises ``ValidationError`` listing every problem found: a sender on
        an unverified domain, a missing template or variable, a rendered
        subject that is not one line, unsubscribe links without a public URL.
        """
        errors: list[FieldError] = []
        try:
            await self.domains.check_sender(request.sender)
        except ValidationError as exc:
            errors.extend(exc.errors)

        content = MessageContent(
            subject=request.subject or "",
            text=request.text,
            html=request.html,
            attachments=request.attachments,
            headers=request.headers,
            template=request.template,
            template_data=request.template_data,
        )
        try:
            content = await self._render(request, content)
            content = await self._add_unsubscribe(request, content, message_id)
        except ValidationError as exc:
            errors.extend(exc.errors)
        if errors:
            raise ValidationError(errors)
        return content

    async def _render(
        self, request: SendRequest, content: MessageContent
    ) -> MessageContent:
        if request.template is None:
            return content
        rendered = await self.templates.render_for_send(
            request.template,
            request.template_data,
            with_subject=request.subject is None,
        )
        subject = request.subject or rendered.content.subject
        if subject is None:
            raise ValidationError(
                [
                    FieldError(
                        "subject",
                        "missing_field",
                        f"the template {request.template!r} has no subject; "
                        "set 'subject' in the request",
                    )
                ]
            )
        _check_rendered_nul(request.template, "text", rendered.content.text)
        _check_rendered_nul(request.template, "html", rendered.content.html)
        return attrs.evolve(
            content,
            subject=subject,
            text=rendered.content.text,
            html=rendered.content.html,
            template_version=rendered.version,
        )

    async def _add_unsubscribe(
        self, request: SendRequest, content: MessageContent, message_id: str
    ) -> MessageContent:
        if not request.list_unsubscribe:
            return content
        fields = await self.unsubscribe_links.headers(
            message_id, request.recipient.email
        )
        return attrs.evolve(content, headers=(*content.headers, *fields))

    async def sign(self, message: Message, data: bytes) -> bytes:
        """DKIM-sign ``data`` when the sender's domain is verified."""
        return await self.domains.sign(message.sender.domain, data)

    async def aligned_return_path_domain(self, message: Message) -> str | None:
        """Return the return-path domain under the sender's domain, if usable."""
        return await self.domains.aligned_return_path_domain(message.sender.domain)


def _check_rendered_nul(template: str, part: str, text: str | None) -> None:
    """Raise ``ValidationError`` when a rendered body contains NUL.

    Email text may not contain NUL (RFC 5322 section 2.3). Request validation
    rejects it in text and html, but a template or its data can still produce it.
    """
    index = text.find("\0") if text else -1
    if index < 0:
        return
    raise ValidationError(
        [
            FieldError(
                "template_data",
                "invalid_character",
                f"the {part} rendered from the template {template!r} contains the "
                f"NUL character U+0000 at index {index}, which email text may not "
                "contain; remove it from template_data or the template",
            )
        ]
    )
