"""Compiling and rendering templates, with strict variables.

A variable is required when the template uses it anywhere, in every branch,
unless the template tests it with ``is defined`` or ``is undefined`` or
gives it a ``default``: then it is optional everywhere in that part. Data
missing a required variable is rejected before rendering, naming every
such variable at once. A use that slips past that rule (an optional
variable used without its guard, or a missing key such as ``user.name``)
fails the render through ``StrictUndefined``, so a blank never reaches an
inbox.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import attrs
from jinja2 import Template as JinjaTemplate
from jinja2 import meta, nodes
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError

from sendarix_backends.templates.model import RenderedContent, TemplateVersion
from sendarix_backends.templates.sandbox import NullValueError, make_environment
from sendarix_backends.templates.save_checks import (
    check_subject_text,
    find_forbidden_expressions,
)
from sendarix_core.addresses import find_control_character, find_header_injection
from sendarix_core.errors import FieldError, ValidationError

__all__ = ["CompiledTemplate", "compile_template"]

PARTS = ("subject", "html", "text")
MAX_SUBJECT_LENGTH = 998
# Characters of one rendered part, as many as a message's text or HTML may
# hold in bytes (sendarix_core.checks.Limits).
MAX_RENDERED_LENGTH = 5_000_000

_HTML = make_environment(autoescape=True)
_PLAIN = make_environment(autoescape=False)
_OPTIONAL_TESTS = frozenset({"defined", "undefined"})
_DEFAULT_FILTERS = frozenset({"default", "d"})
_LOADING_NODES = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)


class _OutputTooLong(Exception):
    pass


@attrs.frozen
class _Part:
    template: JinjaTemplate
    required: frozenset[str]


@attrs.frozen
class CompiledTemplate:
    """The compiled parts of one template version; absent parts are None."""

    name: str
    parts: Mapping[str, _Part | None]

    def required_variables(self, *, with_subject: bool = True) -> frozenset[str]:
        required: set[str] = set()
        for part_name, part in self.parts.items():
            if part is not None and (with_subject or part_name != "subject"):
                required |= part.required
        return frozenset(required)

    def render(
        self, data: Mapping[str, Any], *, with_subject: bool = True
    ) -> RenderedContent:
        """Render with ``data``; raise ``ValidationError`` naming every problem.

        With ``with_subject`` false the subject part is skipped, for a
        request that sets its own subject.
        """
        missing = sorted(self.required_variables(with_subject=with_subject) - set(data))
        if missing:
            raise ValidationError([self._missing(name) for name in missing])

        rendered: dict[str, str | None] = dict.fromkeys(PARTS)
        errors = []
        for part_name, part in self.parts.items():
            if part is None or (part_name == "subject" and not with_subject):
                continue
            try:
                rendered[part_name] = self._render_part(part_name, part, data)
            except _OutputTooLong as exc:
                errors.append(FieldError("template", "too_long", str(exc)))
            # Any exception here comes from the template, such as a TypeError in
            # an expression, so it is the template author's to fix.
            except Exception as exc:
                errors.append(self._render_error(part_name, exc))
        if errors:
            raise ValidationError(errors)

        _check_subject(rendered["subject"], self.name)
        return RenderedContent(
            subject=rendered["subject"], html=rendered["html"], text=rendered["text"]
        )

    def _render_part(self, part_name: str, part: _Part, data: Mapping[str, Any]) -> str:
        """Render one part, stopping once its output passes the cap.

        Loops multiply output: eight nested loops over a 10-character string
        around a short line render gigabytes. ``generate`` yields the output
        as it is produced, so the render stops at the cap instead of
        exhausting memory.
        """
        chunks = []
        size = 0
        for chunk in part.template.generate(data):
            size += len(chunk)
            if size > MAX_RENDERED_LENGTH:
                raise _OutputTooLong(
                    f"the {part_name} of template {self.name!r} renders to more "
                    f"than {MAX_RENDERED_LENGTH} characters; shorten its loops "
                    "or its data"
                )
            chunks.append(chunk)
        return "".join(chunks)

    def _missing(self, variable: str) -> FieldError:
        return FieldError(
            f"template_data.{variable}",
            "missing_variable",
            f"the template {self.name!r} uses the variable {variable!r}, which "
            "template_data does not define",
        )

    def _render_error(self, part_name: str, exc: Exception) -> FieldError:
        """Describe an error raised while rendering, such as a TypeError."""
        message = f"rendering the {part_name} of template {self.name!r} failed: {exc}"
        if isinstance(exc, NullValueError) and exc.path is not None:
            return FieldError(f"template_data.{exc.path}", "missing_variable", message)
        if isinstance(exc, UndefinedError):
            return FieldError("template_data", "missing_variable", message)
        if isinstance(exc, SecurityError):
            return FieldError("template", "template_not_allowed", message)
        return FieldError("template", "template_error", message)


def compile_template(
    name: str, version: TemplateVersion, *, saving: bool = False
) -> CompiledTemplate:
    """Compile each part; raise ``ValidationError`` for syntax errors and,
    when ``saving``, for what ``save_checks`` finds.

    The save checks run only when a version is saved, so a version saved
    before they existed still renders as it did.
    """
    parts: dict[str, _Part | None] = {}
    errors: list[FieldError] = []
    for part_name in PARTS:
        source = getattr(version, part_name)
        if source is None:
            parts[part_name] = None
            continue
        environment = _HTML if part_name == "html" else _PLAIN
        try:
            parts[part_name] = _compile_part(
                part_name, environment, source, saving=saving
            )
        except ValidationError as exc:
            errors.extend(exc.errors)
        except TemplateSyntaxError as exc:
            errors.append(
                FieldError(
                    part_name,
                    "template_syntax_error",
                    f"line {exc.lineno}: {exc.message}",
                )
            )
        except (RecursionError, SyntaxError):
            # Jinja parses recursively, and Python rejects the code Jinja
            # generates past 20 nested loops or 100 levels of indentation.
            errors.append(
                FieldError(
                    part_name,
                    "template_too_deep",
                    f"the {part_name} template nests too deeply to compile; use "
                    "fewer levels of loops, blocks, parentheses or chained filters",
                )
            )
    if errors:
        raise ValidationError(errors)
    return CompiledTemplate(name, parts)


def _compile_part(
    part_name: str, environment: Any, source: str, *, saving: bool
) -> _Part:
    tree = environment.parse(source)
    for node in tree.find_all(_LOADING_NODES):
        raise TemplateSyntaxError(
            "templates can't include, import or extend other templates; "
            "put the shared text in this template",
            node.lineno,
        )
    for node in tree.find_all(nodes.Name):
        if node.name == "self":
            raise TemplateSyntaxError(
                "'self' is not available in templates; use template_data",
                node.lineno,
            )
    if saving:
        found = find_forbidden_expressions(part_name, tree)
        line_break = check_subject_text(tree) if part_name == "subject" else None
        if line_break is not None:
            found.insert(0, line_break)
        if found:
            raise ValidationError(found)
    template = environment.from_string(tree)
    return _Part(template, frozenset(_required_variables(tree)))


def _required_variables(tree: nodes.Template) -> set[str]:
    undeclared = meta.find_undeclared_variables(tree)
    optional = {
        child.name
        for parent, child in _parents_and_names(tree)
        if _is_guard(parent, child)
    }
    return undeclared - optional


def _parents_and_names(node: nodes.Node) -> Iterator[tuple[nodes.Node, nodes.Name]]:
    for child in node.iter_child_nodes():
        if isinstance(child, nodes.Name):
            yield node, child
        yield from _parents_and_names(child)


def _is_guard(parent: nodes.Node, name: nodes.Name) -> bool:
    if isinstance(parent, nodes.Test) and parent.name in _OPTIONAL_TESTS:
        return parent.node is name
    if isinstance(parent, nodes.Filter) and parent.name in _DEFAULT_FILTERS:
        return parent.node is name
    return False


def _check_subject(subject: str | None, name: str) -> None:
    if subject is None:
        return
    problem = None
    injected = find_header_injection(subject)
    control = find_control_character(subject)
    if injected == "\0":
        problem = "contains the NUL character U+0000"
    elif injected is not None:
        problem = f"contains the line break U+{ord(injected):04X}"
    elif control is not None:
        problem = f"contains the control character U+{ord(control):04X}"
    elif len(subject) > MAX_SUBJECT_LENGTH:
        problem = (
            f"is {len(subject)} characters long; the maximum is {MAX_SUBJECT_LENGTH}"
        )
    if problem is not None:
        raise ValidationError(
            [
                FieldError(
                    "subject",
                    "header_injection" if injected else "invalid_subject",
                    f"the subject rendered by template {name!r} {problem}; a "
                    "subject must be one line",
                )
            ]
        )
