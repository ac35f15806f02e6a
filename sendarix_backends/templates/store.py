"""Where templates are kept: the interface and an in-memory version."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import attrs

from sendarix_backends.templates.model import Template, TemplateVersion

__all__ = ["MemoryTemplateStore", "TemplateStore"]


class TemplateStore(Protocol):
    async def create_template(self, template: Template) -> bool:
        """Store a new template; return False when the name exists already."""
        ...

    async def get_template(self, name: str) -> Template | None: ...

    async def list_templates(self, limit: int, after: str | None) -> list[Template]:
        """Return up to ``limit`` templates whose names sort after ``after``."""
        ...

    async def add_version(
        self,
        name: str,
        *,
        subject: str | None,
        html: str | None,
        text: str | None,
        now: datetime,
    ) -> Template | None:
        """Add the next version as a draft; None when the template is gone."""
        ...

    async def publish(self, name: str, version: int, now: datetime) -> Template | None:
        """Make ``version`` (which must exist) the one sends use."""
        ...

    async def delete_template(self, name: str) -> bool:
        """Delete a template and all its versions; return whether it existed."""
        ...

    async def get_published(self, name: str) -> TemplateVersion | None:
        """Return the published version of ``name``, if the template exists."""
        ...


class MemoryTemplateStore:
    """Templates in a dictionary, for tests and the in-memory message store."""

    def __init__(self) -> None:
        self._templates: dict[str, Template] = {}

    async def create_template(self, template: Template) -> bool:
        if template.name in self._templates:
            return False
        self._templates[template.name] = template
        return True

    async def get_template(self, name: str) -> Template | None:
        return self._templates.get(name)

    async def list_templates(self, limit: int, after: str | None) -> list[Template]:
        names = sorted(
            name for name in self._templates if after is None or name > after
        )
        return [self._templates[name] for name in names[:limit]]

    async def add_version(
        self,
        name: str,
        *,
        subject: str | None,
        html: str | None,
        text: str | None,
        now: datetime,
    ) -> Template | None:
        template = self._templates.get(name)
        if template is None:
            return None
        version = TemplateVersion(
            version=template.latest.version + 1,
            subject=subject,
            html=html,
            text=text,
            created_at=now,
        )
        updated = attrs.evolve(
            template, versions=(*template.versions, version), updated_at=now
        )
        self._templates[name] = updated
        return updated

    async def publish(self, name: str, version: int, now: datetime) -> Template | None:
        template = self._templates.get(name)
        if template is None:
            return None
        versions = tuple(
            attrs.evolve(item, published_at=now) if item.version == version else item
            for item in template.versions
        )
        updated = attrs.evolve(
            template, versions=versions, published_version=version, updated_at=now
        )
        self._templates[name] = updated
        return updated

    async def delete_template(self, name: str) -> bool:
        return self._templates.pop(name, None) is not None

    async def get_published(self, name: str) -> TemplateVersion | None:
        template = self._templates.get(name)
        return None if template is None else template.published
