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
- sizes checked before a result is built: ``*``, ``+``, ``~``, ``**`` and
  the filters that can grow their input (``join``, ``replace``, ``batch``,
  ``slice``) compute the size of their result first, and reject one over
  ``MAX_VALUE_LENGTH`` characters, ``MAX_ITEMS`` items or ``MAX_INT_BITS``
  bits. The output a macro or block collects is capped the same way, and
  ``MAX_PRINTED_LENGTH`` bounds all that a part prints. ``str.format``,
  ``%`` on strings and the filters whose output can't be sized cheaply
  (``center``, ``indent``, ``wordwrap``, ``format``, ``urlize``) are
  removed;
- a budget of ``MAX_STEPS`` steps per rendered part, a step being about a
  microsecond of work. A loop iteration or a printed value is one step and
  a call a few. A filter, comparison, slice or operator also costs one
  step per item of a list or mapping and per 100 characters of a string
  it reads or builds, and more for filters that are slower per item;
- a ``null`` value that is printed, joined with ``~`` or passed to a text
  filter fails like a missing variable, and a printed list or mapping is
  written as JSON.

The rendered output of a part is capped too (see ``rendering``).
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    KeysView,
    Mapping,
    ValuesView,
)
from types import GeneratorType
from typing import Any, cast

from jinja2 import StrictUndefined, Undefined, nodes, pass_context
from jinja2.compiler import CodeGenerator, Frame, operators
from jinja2.exceptions import SecurityError, TemplateRuntimeError
from jinja2.idtracking import VAR_LOAD_RESOLVE
from jinja2.runtime import Context, LoopContext, Macro, markup_join, str_join
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import _PassArg

from sendarix_backends.templates.sandbox_filters import (
    BOUNDED_FILTERS,
    MAX_ITEMS,
    MAX_VALUE_LENGTH,
    NullValueError,
    check_text_length,
    measure_text,
)

__all__ = [
    "MAX_EXPONENT",
    "MAX_INT_BITS",
    "MAX_ITEMS",
    "MAX_PRINTED_LENGTH",
    "MAX_STEPS",
    "MAX_VALUE_LENGTH",
    "NullValueError",
    "make_environment",
]

# The largest exponent of one ``**``.
MAX_EXPONENT = 64
# About 3,000 decimal digits, below Python's default limit of 4,300 digits
# for converting an int to a string (sys.get_int_max_str_digits).
MAX_INT_BITS = 10_000
# Steps one rendered part may take. A step is roughly a microsecond of CPU.
# The costs below come from timing full budgets of loops, calls, filters
# and sorts (Jinja2 3.1.6, Python 3.11, one AMD EPYC core): they took 0.3
# to 2.3 s, the slowest being ``~`` inside nested loops.
# NOTE: the costs are estimates, so an operation costlier than its steps
# can make a full budget take a few times longer.
MAX_STEPS = 2_000_000
# Characters one rendered part may print with ``{{ }}``. Output inside a
# macro, a ``set`` block or a ``call`` block collects in a list that the
# part's output cap doesn't see, and HTML escaping copies each value into
# it, so this bounds that list. Printing a macro's output counts it again,
# so the cap is 5 times the largest part.
MAX_PRINTED_LENGTH = 25_000_000
_CHARACTERS_PER_STEP = 100
_OUTPUT_STEPS = 1
_FILTER_CALL_STEPS = 3
_MACRO_CALL_STEPS = 6
_METHOD_CALL_STEPS = 8
# Filters that walk their input item by item in Python, a string character
# by character, so they cost a step per item. Those that sort or hash with
# a key function cost 6, as sort takes about 5 microseconds per item.
_ITEM_FILTERS = frozenset(
    {
        "batch",
        "first",
        "items",
        "join",
        "last",
        "list",
        "map",
        "reject",
        "rejectattr",
        "select",
        "selectattr",
        "slice",
        "sum",
    }
)
_SORTING_FILTERS = frozenset({"dictsort", "groupby", "max", "min", "sort", "unique"})
_SORTING_STEPS_PER_ITEM = 6
# Characters per step for the text filters that work on each character or
# word in Python, measured at 6 to 23 microseconds per 100 characters.
# Other text filters run in C, at under 1 microsecond per 100 characters.
_SLOW_TEXT_FILTER_CHARACTERS = {
    "striptags": 5,
    "title": 5,
    "urlencode": 10,
    "wordcount": 10,
}

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
    "urlize",
    "wordwrap",
)
# Filters that convert their arguments to text; their arguments are sized
# before the call, and a null value among them fails like a missing one.
_TEXT_FILTERS = frozenset(
    {
        "capitalize",
        "e",
        "escape",
        "forceescape",
        "lower",
        "replace",
        "safe",
        "string",
        "striptags",
        "title",
        "tojson",
        "trim",
        "truncate",
        "upper",
        "urlencode",
        "wordcount",
        "xmlattr",
    }
)
_NULL_ALLOWED_FILTERS = frozenset({"tojson"})


class _StepContext(Context):
    """A render context that counts the steps of its render."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.steps = 0
        self.printed = 0

    def charge(self, steps: int) -> bool:
        """Add ``steps``; raise ``SecurityError`` past ``MAX_STEPS``.

        Returns True, so the generated code can charge inside a test.
        """
        self.steps += steps
        if self.steps > MAX_STEPS:
            raise SecurityError(
                f"the template takes more than {MAX_STEPS} steps (loop "
                "iterations, calls and filter work); shorten its loops or its data"
            )
        return True

    def count_printed(self, value: Any) -> None:
        """Add the length of a printed value; raise past the print cap."""
        self.printed += measure_text(value)[0]
        if self.printed > MAX_PRINTED_LENGTH:
            raise SecurityError(
                f"the template prints more than {MAX_PRINTED_LENGTH} characters, "
                "counting the output of macros and blocks each time it is printed"
            )

    def looked_up(self, value: Any) -> Any:
        """Return ``value`` after charging one step for the lookup."""
        self.charge(1)
        return value

    def charged(self, value: Any) -> Any:
        """Return ``value`` after charging the steps of reading it once."""
        self.charge(1 + _work(value))
        return value


def _charge_step(lineno: int) -> nodes.InternalName:
    """Return an expression node whose code charges one step and is true.

    Jinja2 allows no custom node types, and an ``InternalName`` compiles to
    its name verbatim, so this is how the generator adds code that no
    template source can write.
    """
    node = object.__new__(nodes.InternalName)
    nodes.Node.__init__(node, "context.charge(1)", lineno=lineno)
    return node


class _SandboxCodeGenerator(CodeGenerator):
    """Code generator that adds the sandbox's checks to the compiled template.

    Loop iterations charge steps, ``~`` sizes its operands before joining
    them, and printed values pass their expression to ``finalize`` so a
    null value can be named in the error.
    """

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        # Count in the body, not around the iterable, so the nested calls of
        # a recursive loop count too. A test runs for every item, also for
        # the items it skips, so a loop with a test counts there instead.
        counted = nodes.For(
            node.target,
            node.iter,
            node.body,
            node.else_,
            node.test,
            node.recursive,
            lineno=node.lineno,
        )
        step = _charge_step(node.lineno)
        if node.test is None:
            counted.body = [nodes.ExprStmt(step, lineno=node.lineno), *node.body]
        else:
            counted.test = nodes.And(step, node.test, lineno=node.lineno)
        super().visit_For(counted, frame)

    def visit_Operand(self, node: nodes.Operand, frame: Frame) -> None:
        # The right operand of ``==`` or ``in`` is what a comparison reads.
        self.write(f" {operators[node.op]} context.charged(")
        self.visit(node.expr, frame)
        self.write(")")

    def visit_Getattr(self, node: nodes.Getattr, frame: Frame) -> None:
        self.write("context.looked_up(")
        super().visit_Getattr(node, frame)
        self.write(")")

    def visit_Getitem(self, node: nodes.Getitem, frame: Frame) -> None:
        # Jinja2 compiles a slice to plain Python, which copies what it takes.
        if isinstance(node.arg, nodes.Slice):
            self.write("context.charged(")
        else:
            self.write("context.looked_up(")
        super().visit_Getitem(node, frame)
        self.write(")")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            autoescape = "context.eval_ctx.autoescape"
        else:
            autoescape = repr(bool(frame.eval_ctx.autoescape))
        self.write(f"environment.sized_concat(context, {autoescape}, (")
        for operand in node.nodes:
            self.visit(operand, frame)
            self.write(", ")
        expressions = tuple(_describe(operand, frame) for operand in node.nodes)
        self.write(f"), {expressions!r})")

    def _output_child_post(
        self, node: nodes.Expr, frame: Frame, finalize: CodeGenerator._FinalizeInfo
    ) -> None:
        if finalize.src is not None:
            self.write(f", {_describe(node, frame)!r}")
        super()._output_child_post(node, frame, finalize)


def _describe(node: nodes.Node, frame: Frame) -> tuple[str, bool] | None:
    """Return an expression's text and whether it reads ``template_data``.

    Only a variable, ``a.b`` and ``a['b']`` or ``a[0]`` have a text;
    a loop variable or a ``set`` name does not read ``template_data``.
    """
    if isinstance(node, nodes.Name):
        reference = frame.symbols.find_ref(node.name)
        from_data = reference is None or frame.symbols.find_load(reference) == (
            VAR_LOAD_RESOLVE,
            node.name,
        )
        return node.name, from_data
    if isinstance(node, nodes.Getattr):
        key: object = node.attr
        parent = node.node
    elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        key = node.arg.value
        parent = node.node
    else:
        return None
    described = _describe(parent, frame)
    if described is None or not isinstance(key, str | int):
        return None
    return f"{described[0]}.{key}", described[1]


def _null_error(expression: tuple[str, bool] | None, action: str) -> NullValueError:
    if expression is None:
        return NullValueError(
            None,
            f"{action} a null value; test it with {{% if %}} or give it a "
            "default with default(..., true)",
        )
    text, from_data = expression
    return NullValueError(
        text if from_data else None,
        f"{action} {text!r}, which is null; test it with {{% if %}} or give "
        "it a default with default(..., true)",
    )


def _work(value: Any) -> int:
    """Return the steps a filter or method costs for reading ``value``."""
    if isinstance(value, str):
        return len(value) // _CHARACTERS_PER_STEP
    if isinstance(value, list | tuple | Mapping):
        return len(value)
    return 0


def _filter_steps(name: str, value: Any) -> int:
    """Return the steps the filter ``name`` costs for reading ``value``."""
    if name in _SORTING_FILTERS or name in _ITEM_FILTERS:
        items = len(value) if isinstance(value, str | list | tuple | Mapping) else 0
        if name in _SORTING_FILTERS:
            return items * _SORTING_STEPS_PER_ITEM
        return items
    if name in _SLOW_TEXT_FILTER_CHARACTERS and isinstance(value, str):
        return len(value) // _SLOW_TEXT_FILTER_CHARACTERS[name]
    return _work(value)


def _to_text(context: _StepContext, value: Any) -> Any:
    """Return a list or mapping as JSON text, and a string or number unchanged.

    Anything else, such as a method or a loop object, would print in
    Python's notation, some of it with a memory address, so it is an error.
    """
    if isinstance(value, GeneratorType):
        raise TemplateRuntimeError(
            "the template prints a sequence that is computed on demand, such as "
            "the result of map or select; add |list or |join"
        )
    if isinstance(value, str | int | float | Undefined):
        # Printing an undefined value raises the error that explains it.
        return value
    if isinstance(value, ItemsView | KeysView | ValuesView):
        # The views that items(), keys() and values() return print as arrays.
        value = list(value)
    if not isinstance(value, list | tuple | Mapping):
        raise TemplateRuntimeError(
            f"the template prints a {_kind_of(value)}, which is not data; print "
            "a field of template_data, or call the method"
        )
    # The size check also raises on a missing value inside the list, such
    # as a user without an email in users|map(attribute='email')|list.
    context.charge(check_text_length(value, "printing this value"))
    return json.dumps(value, ensure_ascii=False)


def _kind_of(value: Any) -> str:
    if isinstance(value, LoopContext):
        return "loop object"
    if isinstance(value, Macro):
        return "macro without calling it"
    if callable(value):
        return "method or function"
    return f"{type(value).__name__} object"


class _Sandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _SandboxCodeGenerator
    context_class = _StepContext

    @staticmethod
    def concat(parts: Iterable[str]) -> str:
        """Join the collected output of a macro or block, sized first."""
        collected = list(parts)
        length = sum(map(len, collected))
        if length > MAX_VALUE_LENGTH:
            raise SecurityError(
                f"a macro or block would produce {length} characters; the "
                f"maximum is {MAX_VALUE_LENGTH}"
            )
        return "".join(collected)

    def sized_concat(
        self,
        context: _StepContext,
        autoescape: bool,
        operands: tuple[Any, ...],
        expressions: tuple[tuple[str, bool] | None, ...],
    ) -> str:
        """Join the operands of ``~`` once their total size is known."""
        texts = []
        for operand, expression in zip(operands, expressions, strict=True):
            if operand is None:
                raise _null_error(expression, "~ joins")
            texts.append(_to_text(context, operand))
        length = sum(measure_text(text)[0] for text in texts)
        if length > MAX_VALUE_LENGTH:
            raise SecurityError(
                f"joining these values would exceed {MAX_VALUE_LENGTH} characters"
            )
        context.charge(_FILTER_CALL_STEPS + length // _CHARACTERS_PER_STEP)
        return markup_join(texts) if autoescape else str_join(texts)

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

    def call(
        __self,
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        # A method such as str.split also costs the length it reads.
        # Counting macro calls bounds recursive macros.
        if isinstance(__context, _StepContext):
            if isinstance(__obj, Macro):
                __context.charge(_MACRO_CALL_STEPS)
            else:
                owner = getattr(__obj, "__self__", None)
                __context.charge(_METHOD_CALL_STEPS + _work(owner))
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(
        self, context: Context, operator_name: str, left: Any, right: Any
    ) -> Any:
        if operator_name == "**":
            _check_power(left, right)
            return operator.pow(left, right)
        if operator_name == "%":
            if isinstance(left, str):
                raise SecurityError(
                    "printf-style formatting with % is not available; use filters"
                )
            return operator.mod(left, right)
        if operator_name == "+":
            _check_addition(left, right)
            result = operator.add(left, right)
        else:
            _check_product(left, right)
            result = operator.mul(left, right)
        if isinstance(context, _StepContext):
            context.charge(1 + _work(result))
        return result


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(exponent, int | float) and abs(exponent) > MAX_EXPONENT:
        raise SecurityError(
            f"the exponent {exponent} is too large; the maximum is {MAX_EXPONENT}"
        )
    # A result has about base.bit_length() * exponent bits, so this check
    # bounds chains such as ((9 ** 64) ** 64) ** 64, which the exponent cap
    # alone lets through.
    if not (_is_int(base) and _is_int(exponent)) or abs(base) <= 1 or exponent <= 0:
        return
    if base.bit_length() * exponent > MAX_INT_BITS:
        raise SecurityError(
            f"{base.bit_length()}-bit base ** {exponent} would exceed "
            f"{MAX_INT_BITS} bits; the maximum is about 3,000 digits"
        )


def _check_addition(left: Any, right: Any) -> None:
    if isinstance(left, str) and isinstance(right, str):
        if len(left) + len(right) > MAX_VALUE_LENGTH:
            raise SecurityError(
                f"joining these values would exceed {MAX_VALUE_LENGTH} characters"
            )
    elif (
        isinstance(left, list | tuple)
        and isinstance(right, list | tuple)
        and len(left) + len(right) > MAX_ITEMS
    ):
        raise SecurityError(f"adding these lists would exceed {MAX_ITEMS} items")


def _check_product(left: Any, right: Any) -> None:
    if _is_int(left) and _is_int(right):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise SecurityError(
                f"multiplying these numbers would exceed {MAX_INT_BITS} bits; "
                "the maximum is about 3,000 digits"
            )
        return
    _check_repeat(left, right)
    _check_repeat(right, left)


def _check_repeat(sequence: Any, times: Any) -> None:
    if not isinstance(sequence, str | list | tuple) or not _is_int(times):
        return
    limit = MAX_VALUE_LENGTH if isinstance(sequence, str) else MAX_ITEMS
    if len(sequence) * times > limit:
        raise SecurityError(
            f"repeating a value {times} times would exceed "
            f"{limit} {'characters' if isinstance(sequence, str) else 'items'}"
        )


def _guarded(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter so it charges steps and sizes its input and result.

    The wrapper always takes the render context, for the step count, and
    passes the filter what it asked for with Jinja2's ``pass_*`` marks. A
    filter that takes the context can't run while a template compiles, so
    no filter allocates at save time either.
    """
    pass_arg = _PassArg.from_obj(function)

    @pass_context
    @functools.wraps(function)
    def guarded_filter(
        context: _StepContext, value: Any, *args: Any, **kwargs: Any
    ) -> Any:
        context.charge(_FILTER_CALL_STEPS + _filter_steps(name, value))
        if name in _TEXT_FILTERS:
            if value is None and name not in _NULL_ALLOWED_FILTERS:
                raise _null_error(None, f"the filter {name!r} got")
            for argument in (value, *args, *kwargs.values()):
                context.charge(check_text_length(argument, f"the filter {name!r}"))

        if pass_arg is _PassArg.context:
            result = function(context, value, *args, **kwargs)
        elif pass_arg is _PassArg.eval_context:
            result = function(context.eval_ctx, value, *args, **kwargs)
        elif pass_arg is _PassArg.environment:
            result = function(context.environment, value, *args, **kwargs)
        else:
            result = function(value, *args, **kwargs)

        _check_result(name, result)
        return result

    return guarded_filter


def _charged_test(function: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a test such as ``in`` so it charges the steps of its arguments."""
    pass_arg = _PassArg.from_obj(function)

    @pass_context
    @functools.wraps(function)
    def charged_test(context: _StepContext, value: Any, *args: Any) -> Any:
        context.charge(_FILTER_CALL_STEPS + _work(value) + sum(map(_work, args)))
        if pass_arg is _PassArg.context:
            return function(context, value, *args)
        if pass_arg is _PassArg.eval_context:
            return function(context.eval_ctx, value, *args)
        if pass_arg is _PassArg.environment:
            return function(context.environment, value, *args)
        return function(value, *args)

    return charged_test


def _check_result(name: str, result: Any) -> None:
    """Raise when a result is over the cap; a last line behind the checks."""
    if isinstance(result, str) and len(result) > MAX_VALUE_LENGTH:
        raise SecurityError(
            f"the filter {name!r} produced {len(result)} characters; the "
            f"maximum is {MAX_VALUE_LENGTH}"
        )
    if isinstance(result, list | tuple | Mapping) and len(result) > MAX_ITEMS:
        raise SecurityError(
            f"the filter {name!r} produced {len(result)} items; the maximum "
            f"is {MAX_ITEMS}"
        )


class TemplateUndefined(StrictUndefined):
    """Raises on any use, like ``StrictUndefined``; named for error messages."""


@pass_context
def _finalize(
    context: _StepContext, value: Any, expression: tuple[str, bool] | None = None
) -> Any:
    """Check a value before it is printed; a list or mapping becomes JSON."""
    if value is None:
        raise _null_error(expression, "the template prints")
    context.charge(_OUTPUT_STEPS)
    text = _to_text(context, value)
    context.count_printed(text)
    return text


def make_environment(*, autoescape: bool) -> SandboxedEnvironment:
    """Return a sandbox; ``autoescape`` HTML-escapes every ``{{ }}`` output."""
    environment = _Sandbox(
        loader=None,
        autoescape=autoescape,
        undefined=TemplateUndefined,
        finalize=_finalize,
        keep_trailing_newline=True,
        auto_reload=False,
        cache_size=0,
    )
    environment.globals.clear()
    for name in _REMOVED_FILTERS:
        environment.filters.pop(name, None)
    environment.filters.update(BOUNDED_FILTERS)
    environment.filters = {
        name: _guarded(name, function) for name, function in environment.filters.items()
    }
    # Jinja2 types its default tests as plain functions.
    tests = cast("dict[str, Callable[..., Any]]", environment.tests)
    environment.tests = {
        name: _charged_test(function) for name, function in tests.items()
    }
    return environment
