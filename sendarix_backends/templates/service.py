"""Templates: their API operations and rendering at acceptance.

Sends use the published version. ``Templates`` caches the published
version of each name for ``PUBLISHED_CACHE_SECONDS`` and compiled templates
by their source, so a busy template costs neither a query nor a compile per
message. A change made through this object takes effect in this process at
once; other processes see a publish or a delete within that interval.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from sendarix_backends.sql.listings import (
    decode_cursor,
    encode_cursor,
    invalid_cursor_error,
)
from sendarix_backends.templates.model import (
    RenderedContent,
    Template,
    TemplateVersion,
)
from sendarix_backends.templates.rendering import CompiledTemplate, compile_template
from sendarix_backends.templates.store import TemplateStore
from sendarix_core.checks import Errors, check_no_nul, reject_unknown_fields
from sendarix_core.clock import Clock
from sendarix_core.errors import FieldError, NotFoundError, ValidationError
from sendarix_core.ports import Page

__all__ = ["PUBLISHED_CACHE_SECONDS", "RenderedTemplate", "Templates"]

PUBLISHED_CACHE_SECONDS = 5.0
MAX_PART_BYTES = 5_000_000
MAX_SUBJECT_SOURCE = 998
_COMPILED_CACHE_SIZE = 256
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_PART_FIELDS = ("subject", "html", "text")


@attrs.frozen(kw_only=True)
class RenderedTemplate:
    """A rendering for a send, and the version it came from."""

    name: str
    version: int
    content: RenderedContent


class Templates:
    def __init__(
        self,
        store: TemplateStore,
        *,
        clock: Clock,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._clock = clock
        self._monotonic = monotonic
        self._published: dict[str, tuple[float, TemplateVersion]] = {}
        self._compiled: OrderedDict[tuple[str | None, ...], CompiledTemplate] = (
            OrderedDict()
        )

    # The API

    async def create(self, body: Mapping[str, Any]) -> Template:
        """Create a template from ``{"name", "subject", "html", "text"}``.

        The first version is published at once. Raises ``ValidationError``
        for invalid fields, template syntax errors or a name in use.
        """
        reject_unknown_fields(body, {"name", *_PART_FIELDS})
        name = _check_name(body.get("name"))
        parts = _check_parts(body, required=True)
        now = self._clock.now()
        version = TemplateVersion(version=1, created_at=now, published_at=now, **parts)
        self._compile(name, version, saving=True)

        template = Template(
            name=name,
            published_version=1,
            versions=(version,),
            created_at=now,
            updated_at=now,
        )
        if not await self._store.create_template(template):
            raise _field_error(
                "name", "already_exists", f"a template named {name!r} exists already"
            )
        return template

    async def get(self, name: str) -> Template:
        template = await self._store.get_template(name)
        if template is None:
            raise NotFoundError("template", name)
        return template

    async def list_templates(self, *, limit: int, cursor: str | None) -> Page[Template]:
        """List templates by name; ``cursor`` is a ``next_cursor`` returned here.

        Raises ``ValidationError`` for a cursor that is empty or edited.
        """
        after = None
        if cursor is not None:
            after = decode_cursor(cursor)
            if not _NAME.fullmatch(after):
                raise invalid_cursor_error(cursor)
        items = await self._store.list_templates(limit + 1, after)
        next_cursor = None
        if len(items) > limit:
            next_cursor = encode_cursor(items[limit - 1].name)
        return Page(items=items[:limit], next_cursor=next_cursor)

    async def update(self, name: str, body: Mapping[str, Any]) -> Template:
        """Add a draft version: the latest one with the given parts replaced.

        A part set to null is removed. Sends keep using the published
        version until ``publish``.
        """
        reject_unknown_fields(body, set(_PART_FIELDS))
        current = await self.get(name)
        changes = _check_parts(body, required=False)
        if not changes:
            # The whole body is at fault, which the empty path names.
            raise _field_error(
                "",
                "missing_field",
                "the body changes nothing; set at least one of subject, html and text",
            )
        latest = current.latest
        merged = {field: getattr(latest, field) for field in _PART_FIELDS}
        merged.update(changes)
        if merged["html"] is None and merged["text"] is None:
            raise _field_error(
                "html", "missing_body", "a template needs an html or a text part"
            )
        now = self._clock.now()
        draft = TemplateVersion(version=latest.version + 1, created_at=now, **merged)
        self._compile(name, draft, saving=True)

        updated = await self._store.add_version(name, now=now, **merged)
        if updated is None:
            raise NotFoundError("template", name)
        return updated

    async def publish(self, name: str, body: Mapping[str, Any]) -> Template:
        """Publish ``{"version": n}``, by default the latest version."""
        reject_unknown_fields(body, {"version"})
        template = await self.get(name)
        number = _check_version(body.get("version", template.latest.version))
        try:
            template.find_version(number)
        except LookupError as exc:
            raise NotFoundError("template_version", f"{name} v{number}") from exc

        updated = await self._store.publish(name, number, self._clock.now())
        if updated is None:
            raise NotFoundError("template", name)
        self._published.pop(name, None)
        return updated

    async def delete(self, name: str) -> None:
        if not await self._store.delete_template(name):
            raise NotFoundError("template", name)
        self._published.pop(name, None)

    async def preview(self, name: str, body: Mapping[str, Any]) -> RenderedContent:
        """Render ``{"template_data", "version"}`` without sending.

        The latest version is rendered unless ``version`` names another, so
        a draft can be checked before it is published.
        """
        reject_unknown_fields(body, {"template_data", "version"})
        template = await self.get(name)
        number = _check_version(body.get("version", template.latest.version))
        try:
            version = template.find_version(number)
        except LookupError as exc:
            raise NotFoundError("template_version", f"{name} v{number}") from exc
        data = _check_data(body.get("template_data"))
        return self._compile(name, version).render(data)

    # Sending

    async def render_for_send(
        self, name: str, data: Mapping[str, Any], *, with_subject: bool
    ) -> RenderedTemplate:
        """Render the published version; raise ``ValidationError`` on any problem.

        ``with_subject`` false skips the template's subject, for a request
        that sets its own.
        """
        version = await self._published_version(name)
        content = self._compile(name, version).render(data, with_subject=with_subject)
        return RenderedTemplate(name=name, version=version.version, content=content)

    async def _published_version(self, name: str) -> TemplateVersion:
        now = self._monotonic()
        cached = self._published.get(name)
        if cached is not None and now < cached[0]:
            return cached[1]
        version = await self._store.get_published(name)
        if version is None:
            raise _field_error(
                "template",
                "template_not_found",
                f"the template {name!r} does not exist; create it with "
                "POST /v1/templates or send text or html instead",
            )
        self._published[name] = (now + PUBLISHED_CACHE_SECONDS, version)
        return version

    def _compile(
        self, name: str, version: TemplateVersion, *, saving: bool = False
    ) -> CompiledTemplate:
        key = (name, version.subject, version.html, version.text)
        compiled = self._compiled.get(key)
        if compiled is None or saving:
            compiled = compile_template(name, version, saving=saving)
            self._compiled[key] = compiled
            if len(self._compiled) > _COMPILED_CACHE_SIZE:
                self._compiled.popitem(last=False)
        else:
            self._compiled.move_to_end(key)
        return compiled


def _check_version(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _field_error("version", "invalid_type", "expected a version number")
    if value < 1:
        raise _field_error(
            "version",
            "invalid_value",
            f"{value} is not a version number; versions are numbered from 1",
        )
    return value


def _check_name(value: object) -> str:
    if isinstance(value, str) and _NAME.fullmatch(value):
        return value
    raise _field_error(
        "name",
        "invalid_name",
        f"{value!r} is not a valid template name; use 1 to 128 letters, digits "
        "and _ . - starting with a letter or digit, such as 'otp-code'",
    )


def _check_parts(body: Mapping[str, Any], *, required: bool) -> dict[str, str | None]:
    """Return the parts present in ``body``; null and "" remove a part."""
    parts: dict[str, str | None] = {}
    errors = []
    for field in _PART_FIELDS:
        if field not in body:
            continue
        value = body[field]
        limit = MAX_SUBJECT_SOURCE if field == "subject" else MAX_PART_BYTES
        nul_errors = Errors()
        if value is not None and not isinstance(value, str):
            errors.append(FieldError(field, "invalid_type", "expected a string"))
        elif not check_no_nul(field, value, nul_errors):
            errors.extend(nul_errors.items)
        elif value is not None and len(value.encode()) > limit:
            errors.append(
                FieldError(
                    field, "too_large", f"the {field} is longer than {limit} bytes"
                )
            )
        else:
            parts[field] = value or None
    # An html or text part that was given but is invalid has its own error.
    given_body = any(body.get(field) for field in ("html", "text"))
    if required and not given_body:
        errors.append(
            FieldError(
                "html", "missing_body", "a template needs an html or a text part"
            )
        )
    if errors:
        raise ValidationError(errors)
    if required:
        return {field: parts.get(field) for field in _PART_FIELDS}
    return parts


def _check_data(value: object) -> Mapping[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return value
    raise _field_error(
        "template_data", "invalid_type", "expected an object of template variables"
    )


def _field_error(field: str, code: str, message: str) -> ValidationError:
    return ValidationError([FieldError(field, code, message)])
