"""The Jinja2 sandbox that templates render in.

A template reaches only its ``template_data``. On top of Jinja2's
``SandboxedEnvironment`` (no ``_``-prefixed or internal attributes, no
unsafe callables) this environment has:

- no globals, so ``range``, ``lipsum``, ``cycler``, ``joiner``,
  ``namespace`` and ``dict`` are undefined names;
- no loader, and ``include``, ``import`` and ``extends`` are rejected when a
  template is saved, so no file or other template can be read;
- attribute access only to ``loop`` and a few methods of strings, mappings
  and lists, and a mapping's keys win over its methods (``order.items`` is
  the data);
- ``*`` and ``**`` checked, and ``str.format``, ``%`` on strings and the
  filters that pad or repeat output (``center``, ``indent``, ``wordwrap``,
  ``format``) removed, so a small template can't allocate a huge string.
  Every filter's string result, and every string that ``~`` or ``+``
  builds, is capped at ``MAX_VALUE_LENGTH`` characters.

The rendered output of a part is capped too (see ``rendering``).

NOTE: rendering has no time limit: nested loops that print nothing can
spin for minutes, and they run on the event loop.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import StrictUndefined, Undefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import SandboxedEnvironment

__all__ = ["MAX_EXPONENT", "MAX_VALUE_LENGTH", "make_environment"]

# The largest string one operation may produce: the 5 MB body limit.
MAX_VALUE_LENGTH = 5_000_000
MAX_EXPONENT = 64

_SAFE_METHODS: Mapping[type, frozenset[str]] = {
    str: frozenset(
        {
            "capitalize",
            "count",
            "endswith",
            "find",
            "isdigit",
            "lower",
            "lstrip",
            "rstrip",
            "split",
            "startswith",
            "strip",
            "title",
            "upper",
        }
    ),
    dict: frozenset({"get", "items", "keys", "values"}),
    list: frozenset({"count", "index"}),
}
_REMOVED_FILTERS = (
    "attr",
    "center",
    "format",
    "indent",
    "pprint",
    "random",
    "wordwrap",
)


class _CappedConcat(CodeGenerator):
    """Code generator whose ``~`` results pass through the length cap."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.check_length(")
        super().visit_Concat(node, frame)
        self.write(")")


class _Sandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _CappedConcat

    def check_length(self, value: Any) -> Any:
        """Return ``value``, or raise when it is a string over the cap."""
        if isinstance(value, str) and len(value) > MAX_VALUE_LENGTH:
            raise SecurityError(
                f"joining these values would exceed {MAX_VALUE_LENGTH} characters"
            )
        return value

    def wrap_str_format(self, value: Any) -> None:
        # ``str.format`` stays unsafe: a width such as "{:>999999999}" would
        # allocate that many characters.
        return None

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        if isinstance(obj, LoopContext):
            return True
        return any(
            isinstance(obj, owner) and attr in names
            for owner, names in _SAFE_METHODS.items()
        )

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(
        self, context: Context, operator_name: str, left: Any, right: Any
    ) -> Any:
        if operator_name == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise SecurityError(
                    f"the exponent {right} is too large; the maximum is {MAX_EXPONENT}"
                )
            return operator.pow(left, right)
        if operator_name == "%":
            if isinstance(left, str):
                raise SecurityError(
                    "printf-style formatting with % is not available; use filters"
                )
            return operator.mod(left, right)
        if operator_name == "+":
            return self.check_length(operator.add(left, right))
        _check_repeat(left, right)
        _check_repeat(right, left)
        return operator.mul(left, right)


def _check_repeat(sequence: Any, times: Any) -> None:
    if not isinstance(sequence, str | list | tuple) or not isinstance(times, int):
        return
    if len(sequence) * times > MAX_VALUE_LENGTH:
        raise SecurityError(
            f"repeating a value {times} times would exceed "
            f"{MAX_VALUE_LENGTH} characters"
        )


def _capped(function: Callable[..., Any]) -> Callable[..., Any]:
    # functools.wraps copies the pass_context/pass_environment marks too.
    @functools.wraps(function)
    def filter_with_cap(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        if isinstance(result, str) and len(result) > MAX_VALUE_LENGTH:
            raise SecurityError(
                f"a filter produced {len(result)} characters; the maximum is "
                f"{MAX_VALUE_LENGTH}"
            )
        return result

    return filter_with_cap


class TemplateUndefined(StrictUndefined):
    """Raises on any use, like ``StrictUndefined``; named for error messages."""


def _reject_hidden_undefined(value: Any) -> Any:
    """Return ``value``; fail on a missing value inside a list or mapping.

    Printing a list calls ``repr`` on its items, which ``StrictUndefined``
    allows, so ``{{ users|map(attribute='email')|list }}`` would print
    ``[Undefined]`` where a user has no email.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Undefined):
            item._fail_with_undefined_error()
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
    return value


def make_environment(*, autoescape: bool) -> SandboxedEnvironment:
    """Return a sandbox; ``autoescape`` HTML-escapes every ``{{ }}`` output."""
    environment = _Sandbox(
        loader=None,
        autoescape=autoescape,
        undefined=TemplateUndefined,
        finalize=_reject_hidden_undefined,
        keep_trailing_newline=True,
        auto_reload=False,
        cache_size=0,
    )
    environment.globals.clear()
    for name in _REMOVED_FILTERS:
        environment.filters.pop(name, None)
    environment.filters = {
        name: _capped(function) for name, function in environment.filters.items()
    }
    return environment
