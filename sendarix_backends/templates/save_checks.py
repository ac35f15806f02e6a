"""Checks made when a template version is saved, before any render.

They reject a line break in the subject's text, an attribute or constant
key that starts and ends with ``__`` (a Python internal name), and ``*`` or
``**`` with constants that the sandbox rejects as too large. They run when
a version is saved, not when one saved before they existed is rendered.
Errors that depend on the data, such as a missing key or ``*`` on two
variables, are still found only when rendering.
"""

from __future__ import annotations

from collections.abc import Iterator

from jinja2 import nodes

from sendarix_backends.templates.sandbox import MAX_EXPONENT, MAX_VALUE_LENGTH
from sendarix_core.addresses import find_header_injection
from sendarix_core.checks import json_excerpt
from sendarix_core.errors import FieldError

__all__ = ["check_subject_text", "find_forbidden_expressions"]

_SEQUENCES = (str, list, tuple)


def check_subject_text(tree: nodes.Template) -> FieldError | None:
    """Return an error when the subject's text contains a line break.

    Only text that is printed counts: a line break inside a tag, or one that
    whitespace control (``{%- -%}``) removes, never reaches the subject.
    """
    for node in tree.find_all(nodes.TemplateData):
        line_break = find_header_injection(node.data)
        if line_break == "\0":
            return FieldError(
                "subject",
                "invalid_character",
                f"line {node.lineno}: the subject's text "
                f"{json_excerpt(node.data)} contains the NUL character U+0000, "
                "which no email header may contain; remove it",
            )
        if line_break is not None:
            return FieldError(
                "subject",
                "header_injection",
                f"line {node.lineno}: the subject's text "
                f"{json_excerpt(node.data)} contains the line break "
                f"U+{ord(line_break):04X}, so every render would fail; a "
                "subject must be one line, so remove it or trim it with "
                "{%- -%}",
            )
    return None


def find_forbidden_expressions(
    part_name: str, tree: nodes.Template
) -> list[FieldError]:
    """Return an error for each expression of ``tree`` that no render allows."""
    return [
        FieldError(
            part_name,
            "template_not_allowed",
            f"line {node.lineno}: {problem}",
        )
        for node, problem in _problems(tree)
    ]


def _problems(tree: nodes.Template) -> Iterator[tuple[nodes.Node, str]]:
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name = _constant_name(node)
        if name is not None and _is_dunder(name):
            problem = (
                f"{json_excerpt(name)} is a Python internal name, which "
                "templates can't read; use keys of template_data that don't "
                "both start and end with __"
            )
            yield node, problem
    for node in tree.find_all((nodes.Mul, nodes.Pow)):
        too_large = _constant_operation(node)
        if too_large is not None:
            yield node, too_large


def _is_dunder(name: str) -> bool:
    # Data keys such as GraphQL's __typename start with __ but don't end
    # with it, and the sandbox reads them from template_data.
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _constant_name(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Getattr):
        return str(node.attr)
    if not isinstance(node, nodes.Getitem):
        return None
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    return None


def _constant_operation(node: nodes.BinExpr) -> str | None:
    """Describe ``**`` with a constant exponent, or ``*`` on two constants,
    that the sandbox rejects whatever the other values are."""
    if not isinstance(node.right, nodes.Const):
        return None
    right = node.right.value
    if isinstance(node, nodes.Pow):
        too_large = isinstance(right, int | float) and abs(right) > MAX_EXPONENT
        if too_large:
            return (
                f"the exponent {right!r} is larger than the maximum of "
                f"{MAX_EXPONENT}; use a smaller exponent"
            )
        return None
    if not isinstance(node.left, nodes.Const):
        return None
    left = node.left.value
    for sequence, times in ((left, right), (right, left)):
        repeats = isinstance(sequence, _SEQUENCES) and isinstance(times, int)
        if repeats and len(sequence) * times > MAX_VALUE_LENGTH:
            return (
                f"repeating {json_excerpt(sequence)} {times} times would exceed "
                f"{MAX_VALUE_LENGTH} characters; repeat it fewer times"
            )
    return None
