"""Message templates: versions, a Jinja2 sandbox and strict rendering."""

from sendarix_backends.templates.model import (
    RenderedContent,
    Template,
    TemplateVersion,
)
from sendarix_backends.templates.service import RenderedTemplate, Templates
from sendarix_backends.templates.store import MemoryTemplateStore, TemplateStore

__all__ = [
    "MemoryTemplateStore",
    "RenderedContent",
    "RenderedTemplate",
    "Template",
    "TemplateStore",
    "TemplateVersion",
    "Templates",
]
