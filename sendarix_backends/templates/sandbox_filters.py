"""Size checks that run before a sandboxed operation allocates its result.

Each check computes the size of a result from its inputs, so a filter such
as ``join`` or ``replace`` is rejected before it builds gigabytes, not after.
A size is in characters for strings and in items for lists.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import Any, Protocol

from jinja2 import Undefined, pass_context, pass_environment, pass_eval_context
from jinja2.environment import Environment
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.filters import (
    do_batch,
    do_tojson,
    make_attrgetter,
    sync_do_join,
    sync_do_slice,
    sync_do_sum,
)
from jinja2.nodes import EvalContext
from markupsafe import Markup, escape, soft_str

__all__ = [
    "BOUNDED_FILTERS",
    "MAX_ITEMS",
    "MAX_VALUE_LENGTH",
    "NullValueError",
    "check_text_length",
    "measure_text",
]

# The largest string one operation may produce: the 5 MB body limit.
MAX_VALUE_LENGTH = 5_000_000
# The largest list one operation may produce. A list holds references, so
# 5,000,000 items take about 40 MB however long the items are.
MAX_ITEMS = 5_000_000
# A printed string of JSON data carries two quotes, an int about one digit
# per 3.3 bits, and a float at most 24 characters ("-1.2345678901234567e-308").
_QUOTES = 2
_FLOAT_LENGTH = 24
_CONSTANT_LENGTH = 5
_END = object()


class NullValueError(UndefinedError):
    """A null value of ``template_data`` reached the output.

    ``path`` is the variable as the template names it, such as
    ``user.name``, or None when the expression is not a plain variable.
    """

    def __init__(self, path: str | None, message: str) -> None:
        super().__init__(message)
        self.path = path


def measure_text(
    value: Any, limit: int = MAX_VALUE_LENGTH, *, indent: int = 0
) -> tuple[int, int]:
    """Return an upper estimate of the length of ``value`` printed as text.

    Returns the estimate and the number of nested values visited, which is
    the work the estimate took. A nested string counts with its quotes but
    without escapes, so ``repr`` or JSON of strings full of control
    characters can be a few times longer. Counting stops once it passes
    ``limit``, so ``[big] * 400`` visits 400 values, not 400 copies of
    ``big``. With ``indent``, each nested value also counts a line break
    and ``indent`` characters per level, as ``json.dumps`` writes them.
    """
    if isinstance(value, str):
        return len(value), 0

    total = 0
    visited = 0
    iterators: list[Iterator[Any]] = [iter((value,))]
    while iterators and total <= limit:
        item = next(iterators[-1], _END)
        if item is _END:
            iterators.pop()
            continue
        visited += 1
        if indent:
            # A value starts a line, and a container ends one with its bracket.
            container = isinstance(item, Collection) and not isinstance(item, str)
            lines = 2 if container else 1
            total += lines * (1 + indent * len(iterators))
        if isinstance(item, str):
            total += len(item) + _QUOTES
        elif isinstance(item, bool) or item is None:
            total += _CONSTANT_LENGTH
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 2
        elif isinstance(item, float):
            total += _FLOAT_LENGTH
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            iterators.append(itertools.chain.from_iterable(item.items()))
        elif isinstance(item, Collection) and not isinstance(item, Undefined):
            total += 2 + 2 * len(item)
            iterators.append(iter(item))
        else:
            # Generators, loop contexts and macros print a short description.
            # An Undefined raises here, as StrictUndefined does on printing.
            total += len(str(item))
    return total, visited


def check_text_length(value: Any, action: str) -> int:
    """Raise ``SecurityError`` when ``value`` printed would pass the cap.

    Returns the number of nested values the check visited.
    """
    length, visited = measure_text(value)
    if length > MAX_VALUE_LENGTH:
        raise SecurityError(
            f"{action} would produce more than {MAX_VALUE_LENGTH} characters"
        )
    return visited


def _check_result_length(length: int, action: str) -> None:
    if length > MAX_VALUE_LENGTH:
        raise SecurityError(
            f"{action} would produce {length} characters; the maximum is "
            f"{MAX_VALUE_LENGTH}"
        )


def _check_item_count(count: int, action: str) -> None:
    if count > MAX_ITEMS:
        raise SecurityError(
            f"{action} would produce {count} items; the maximum is {MAX_ITEMS}"
        )


class StepCounter(Protocol):
    """The sandbox's render context, which counts the steps of a render."""

    environment: Environment
    eval_ctx: EvalContext

    def charge(self, steps: int) -> bool: ...


@pass_context
def bounded_join(
    context: StepCounter,
    value: Iterable[Any],
    d: Any = "",
    attribute: str | int | None = None,
) -> str:
    """Join like Jinja2's ``join``, sizing the result before building it.

    With autoescape, escaping can make the result up to 5 times the size
    counted here, which stays bounded.
    """
    items = list(value)
    if attribute is not None:
        items = list(map(make_attrgetter(context.environment, attribute), items))

    length = len(soft_str(d)) * max(len(items) - 1, 0)
    visited = 0
    for item in items:
        item_length, item_visited = measure_text(item)
        length += item_length
        visited += item_visited
        if length > MAX_VALUE_LENGTH:
            raise SecurityError(
                f"join would produce more than {MAX_VALUE_LENGTH} characters"
            )
    context.charge(visited)
    return sync_do_join(context.eval_ctx, items, d)


@pass_eval_context
def bounded_replace(
    eval_ctx: EvalContext, s: Any, old: Any, new: Any, count: int | None = None
) -> str:
    """Replace like Jinja2's ``replace``, sizing the result before building it.

    The sandbox sizes ``s``, ``old`` and ``new`` before the call, as for
    every filter that turns its arguments into text.
    """
    text: str
    # Jinja2 3.1 escapes ``s`` when only the arguments are markup, and a
    # markup string escapes the arguments of its own ``replace``.
    if not eval_ctx.autoescape:
        text = str(s)
    elif hasattr(old, "__html__") or (
        hasattr(new, "__html__") and not hasattr(s, "__html__")
    ):
        text = escape(s)
    else:
        text = soft_str(s)
    target: str
    replacement: str
    if isinstance(text, Markup):
        target, replacement = escape(old), escape(new)
    else:
        target, replacement = str(old), str(new)

    # An empty target matches before every character and at the end.
    matches = text.count(target) if target else len(text) + 1
    if count is not None and count >= 0:
        matches = min(matches, count)
    growth = len(replacement) - len(target)
    _check_result_length(len(text) + matches * growth, "replace")
    return text.replace(target, replacement, -1 if count is None else count)


@pass_eval_context
def bounded_tojson(eval_ctx: EvalContext, value: Any, indent: Any = None) -> Any:
    """Dump JSON like Jinja2's ``tojson``, sizing the indented result first.

    An indent of a billion spaces would repeat on every line.
    """
    if indent is None:
        width = 0
    elif isinstance(indent, int) and not isinstance(indent, bool) and indent >= 0:
        width = indent
    elif isinstance(indent, str):
        width = len(indent)
    else:
        raise SecurityError(
            f"tojson takes a number or a string as indent, not {indent!r}"
        )
    length, _ = measure_text(value, indent=width)
    _check_result_length(length, "tojson")
    return do_tojson(eval_ctx, value, indent)


def bounded_batch(value: Iterable[Any], linecount: int, fill_with: Any = None) -> Any:
    """Batch like Jinja2's ``batch``; a fill value can't pad past the cap."""
    if fill_with is not None:
        _check_item_count(linecount, "batch with a fill value")
    return do_batch(value, linecount, fill_with)


def bounded_slice(value: Collection[Any], slices: int, fill_with: Any = None) -> Any:
    """Slice like Jinja2's ``slice``, which builds one list per slice."""
    _check_item_count(slices, "slice")
    return sync_do_slice(value, slices, fill_with)


@pass_environment
def numeric_sum(
    environment: Environment,
    iterable: Iterable[Any],
    attribute: str | int | None = None,
    start: Any = 0,
) -> Any:
    """Sum numbers like Jinja2's ``sum``; ``start`` must be a number.

    Summing lists with ``start=[]`` copies the growing list at every step,
    so a few lines of template could build billions of items.
    """
    if isinstance(start, bool) or not isinstance(start, int | float):
        raise SecurityError(
            f"sum takes a number as start, not {type(start).__name__}; "
            "sum adds numbers only"
        )
    return sync_do_sum(environment, iterable, attribute, start)


BOUNDED_FILTERS: Mapping[str, Callable[..., Any]] = {
    "batch": bounded_batch,
    "join": bounded_join,
    "replace": bounded_replace,
    "slice": bounded_slice,
    "sum": numeric_sum,
    "tojson": bounded_tojson,
}
