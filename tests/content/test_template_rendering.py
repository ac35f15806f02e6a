"""Rendering in the template sandbox: escaping, strict variables, isolation."""

from __future__ import annotations

from typing import Any

import pytest

from sendarix_backends.templates import TemplateVersion
from sendarix_backends.templates.rendering import CompiledTemplate, compile_template
from sendarix_core.errors import ValidationError
from tests.core.factories import T0


def compile_parts(
    subject: str | None = None, html: str | None = None, text: str | None = None
) -> CompiledTemplate:
    version = TemplateVersion(
        version=1, subject=subject, html=html, text=text, created_at=T0
    )
    return compile_template("welcome", version)


def errors_of(compiled: CompiledTemplate, data: dict[str, Any]) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as raised:
        compiled.render(data)
    return [error.to_dict() for error in raised.value.errors]


def compile_errors(**parts: str) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as raised:
        compile_parts(**parts)
    return [error.to_dict() for error in raised.value.errors]


def test_html_part_escaped() -> None:
    compiled = compile_parts(html="<p>Hi {{ name }}</p>", text="Hi {{ name }}")

    rendered = compiled.render({"name": "<b>Ada</b> & co"})

    assert rendered.html == "<p>Hi &lt;b&gt;Ada&lt;/b&gt; &amp; co</p>"


def test_text_part_raw() -> None:
    compiled = compile_parts(html="<p>Hi {{ name }}</p>", text="Hi {{ name }}")

    rendered = compiled.render({"name": "<b>Ada</b> & co"})

    assert rendered.text == "Hi <b>Ada</b> & co"


def test_subject_raw() -> None:
    compiled = compile_parts(subject="Hi {{ name }}", text="x")

    assert compiled.render({"name": "Ada & <co>"}).subject == "Hi Ada & <co>"


def test_missing_variables_all_named() -> None:
    compiled = compile_parts(
        subject="{{ code }}",
        text="{% if vip %}{{ coupon }}{% endif %}{{ name }}",
    )

    errors = errors_of(compiled, {"vip": False})

    assert [error["field"] for error in errors] == [
        "template_data.code",
        "template_data.coupon",
        "template_data.name",
    ]
    assert {error["code"] for error in errors} == {"missing_variable"}
    assert "'coupon'" in errors[1]["message"]


def test_defined_test_makes_optional() -> None:
    compiled = compile_parts(text="{% if note is defined %}{{ note }}{% endif %}.")

    assert compiled.render({}).text == "."


def test_default_filter_makes_optional() -> None:
    compiled = compile_parts(text="Hi {{ name | default('there') }}")

    assert compiled.render({}).text == "Hi there"


def test_missing_key_rejected() -> None:
    compiled = compile_parts(text="Hi {{ user.name }}")

    [error] = errors_of(compiled, {"user": {}})

    assert error["code"] == "missing_variable"
    assert "name" in error["message"]


def test_missing_key_inside_printed_list_rejected() -> None:
    compiled = compile_parts(text="{{ users | map(attribute='email') | list }}")

    [error] = errors_of(compiled, {"users": [{"name": "a"}]})

    assert error["code"] == "missing_variable"
    assert "email" in error["message"]


def test_printed_list_of_values_kept() -> None:
    compiled = compile_parts(text="{{ users | map(attribute='email') | list }}")

    rendered = compiled.render({"users": [{"email": "a@example.com"}]})

    assert rendered.text == '["a@example.com"]'


def test_loop_variables_available() -> None:
    compiled = compile_parts(
        text="{% for item in items %}{{ loop.index }}:{{ item }} {% endfor %}"
    )

    assert compiled.render({"items": ["a", "b"]}).text == "1:a 2:b "


def test_mapping_key_wins_over_method() -> None:
    compiled = compile_parts(text="{{ order.items }}")

    assert compiled.render({"order": {"items": 3}}).text == "3"


def test_subject_line_break_rejected() -> None:
    compiled = compile_parts(subject="Code {{ code }}", text="x")

    [error] = errors_of(compiled, {"code": "1\r\nBcc: eve@evil.example"})

    assert error["field"] == "subject"
    assert error["code"] == "header_injection"


def test_subject_skipped_when_overridden() -> None:
    compiled = compile_parts(subject="{{ code }}", text="x")

    assert compiled.render({}, with_subject=False).subject is None


@pytest.mark.parametrize(
    "source",
    [
        "{% include '/etc/passwd' %}",
        "{% import 'macros.html' as macros %}",
        "{% from 'macros.html' import button %}",
        "{% extends 'layout.html' %}",
        "{{ self }}",
    ],
)
def test_files_and_templates_unreachable(source: str) -> None:
    [error] = compile_errors(text=source)

    assert error["field"] == "text"
    assert error["code"] == "template_syntax_error"


@pytest.mark.parametrize(
    "source",
    [
        "{{ name.format }}",
        "{{ name.encode }}",
        "{{ items.append }}",
        "{{ name[key] }}",
        "{{ name * 100000000 }}",
        "{{ 2 ** power }}",
        "{{ '%999999999d' % 1 }}",
    ],
)
def test_attributes_unreachable(source: str) -> None:
    compiled = compile_parts(text=source)

    data = {"name": "Ada", "items": [], "key": "__class__", "power": 100_000}
    [error] = errors_of(compiled, data)

    assert error["code"] == "template_not_allowed"


@pytest.mark.parametrize(
    "name", ["range", "lipsum", "cycler", "joiner", "namespace", "dict", "config"]
)
def test_globals_unreachable(name: str) -> None:
    compiled = compile_parts(text=f"{{{{ {name} }}}}")

    [error] = errors_of(compiled, {})

    assert error["field"] == f"template_data.{name}"


@pytest.mark.parametrize("name", ["center", "indent", "wordwrap", "format", "attr"])
def test_padding_filters_removed(name: str) -> None:
    [error] = compile_errors(text=f"{{{{ 'x' | {name}(10) }}}}")

    assert "No filter" in error["message"]


def test_syntax_error_names_line() -> None:
    [error] = compile_errors(html="<p>\n{{ name </p>")

    assert error["field"] == "html"
    assert error["message"].startswith("line 2")


def test_nested_loops_stop_at_cap() -> None:
    # Eight loops over ten characters around 40: about 4 GB if rendered.
    loops = "".join(f"{{% for v{i} in 'abcdefghij' %}}" for i in range(8))
    text = loops + "x" * 39 + "\n" + "{% endfor %}" * 8
    compiled = compile_parts(text=text)

    [error] = errors_of(compiled, {})

    assert error["field"] == "template"
    assert error["code"] == "too_long"
    assert "more than 5000000 characters" in error["message"]


def test_output_at_cap_renders() -> None:
    compiled = compile_parts(text="{% for c in data %}{{ c }}{% endfor %}")

    rendered = compiled.render({"data": ["x" * 1000] * 5000})

    assert rendered.text is not None
    assert len(rendered.text) == 5_000_000


@pytest.mark.parametrize("operator", ["~", "+"])
def test_doubling_string_stops_at_cap(operator: str) -> None:
    doubling = f"{{% set s = s {operator} s %}}" * 30
    compiled = compile_parts(text="{% set s = 'xxxxxxxx' %}" + doubling + "{{ s }}")

    [error] = errors_of(compiled, {})

    assert error["code"] == "template_not_allowed"
    assert "would exceed 5000000 characters" in error["message"]


def test_concatenation_renders() -> None:
    compiled = compile_parts(text="{{ a ~ b }} {{ a + b }} {{ n + 1 }}")

    assert compiled.render({"a": "x", "b": "y", "n": 1}).text == "xy xy 2"
