"""Templates and their versions."""

from __future__ import annotations

from datetime import datetime

import attrs

__all__ = ["RenderedContent", "Template", "TemplateVersion"]


@attrs.frozen(kw_only=True)
class TemplateVersion:
    """One immutable revision of a template's three parts.

    ``subject`` is None when the template leaves the subject to the request.
    ``published_at`` is when this version was last published.
    """

    version: int
    subject: str | None
    html: str | None
    text: str | None
    created_at: datetime
    published_at: datetime | None = None


@attrs.frozen(kw_only=True)
class Template:
    """A named template; sends use ``published_version``.

    ``versions`` runs oldest first. Versions newer than the published one are
    drafts; older ones are kept so a publish can roll back to them.
    """

    name: str
    published_version: int
    versions: tuple[TemplateVersion, ...]
    created_at: datetime
    updated_at: datetime

    @property
    def latest(self) -> TemplateVersion:
        return self.versions[-1]

    @property
    def published(self) -> TemplateVersion:
        return self.find_version(self.published_version)

    def find_version(self, number: int) -> TemplateVersion:
        """Return version ``number``; raise ``LookupError`` if it does not exist."""
        for version in self.versions:
            if version.version == number:
                return version
        raise LookupError(f"template {self.name!r} has no version {number}")


@attrs.frozen(kw_only=True)
class RenderedContent:
    """The parts of a message as a template rendered them."""

    subject: str | None
    html: str | None
    text: str | None
