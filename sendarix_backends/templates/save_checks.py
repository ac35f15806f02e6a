"""Checks made when a template version is saved, before any render.

They reject a line break written into the subject, an attribute or constant
key starting with ``__``, and ``*`` or ``**`` with constants that the
sandbox rejects as too large. The sandbox reads a ``__`` name only when
template_data has a key of that name, so such a name is treated as a
mistake. Errors that depend on the data, such as a missing key or ``*`` on
two variables, are still found only when rendering.
"""

from __future__ import annotations

from collections.abc import Iterator

from jinja2 import nodes

from sendarix_backends.templates.sandbox import MAX_EXPONENT, MAX_VALUE_LENGTH
from sendarix_core.addresses import find_header_injection
from sendarix_core.checks import json_excerpt
from sendarix_core.errors import FieldError

__all__ = ["check_subject_source", "find_forbidden_expressions"]

_SEQUENCES = (str, list, tuple)


def check_subject_source(source: str) -> FieldError | None:
    """Return an error when the subject's source contains a line break.

    Any line break in the source, even one inside a ``{% %}`` tag, is
    rejected, because one in the text would reach the rendered subject.
    """
    line_break = find_header_injection(source)
    if line_break is None:
        return None
    return FieldError(
        "subject",
        "header_injection",
        f"the subject {json_excerpt(source)} contains the line break "
        f"U+{ord(line_break):04X}, so every render would fail; a subject must "
        "be one line, so write the whole subject template on one line",
    )


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
        if name is not None and name.startswith("__"):
            problem = (
                f"{json_excerpt(name)} is a Python internal name, which "
                "templates can't read; use keys of template_data that don't "
                "start with __"
            )
            yield node, problem
    for node in tree.find_all((nodes.Mul, nodes.Pow)):
        too_large = _constant_operation(node)
        if too_large is not None:
            yield node, too_large


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
