"""Sandbox limits: sizes checked before allocating, steps, null and JSON output.

The templates that would allocate gigabytes without the checks render in a
child process with a 1 GiB address-space limit and a CPU-time limit. A
regression then fails with an error code or a killed process, instead of
swapping or hanging the test run.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from typing import Any

import httpx
import pytest

from tests.content.conftest import message_body
from tests.content.test_template_rendering import (
    compile_errors,
    compile_parts,
    errors_of,
)

ADDRESS_SPACE_LIMIT = 1024**3
CPU_SECONDS_LIMIT = 60
PEAK_RSS_LIMIT_KIB = 400 * 1024

BOMBS = {
    "join": "{{ (['x' * 5000000] * 400) | join | length }}",
    "replace": "{{ ('x' * 5000000) | replace('x', 'y' * 400) | length }}",
    "replace_empty": "{{ ('x' * 5000000) | replace('', 'y') | length }}",
    "batch_fill": "{{ 'x' | batch(100000000, 'y') | first | length }}",
    "slice": "{{ 'x' | slice(100000000) | list | length }}",
    "print_list": "{{ ['x' * 5000000] * 400 }}",
    "string": "{{ (['x' * 5000000] * 400) | string | length }}",
    "tojson": "{{ (['x' * 5000000] * 400) | tojson | length }}",
    "tojson_indent": "{{ [1, [2]] | tojson(100000000) | length }}",
    "urlencode": "{{ (['x' * 5000000] * 400) | urlencode | length }}",
    "escape": "{{ (['x' * 5000000] * 400) | e | length }}",
    "concat": "{{ ('x' * 5000000) ~ ('x' * 5000000) ~ ('x' * 5000000) }}",
    "concat_list": "{{ '' ~ ['x' * 5000000] * 400 }}",
    "sum_lists": "{{ [[1] * 5000000] * 5000000 | sum(start=[]) | length }}",
    "list_doubling": "{% set l = [1] %}" + "{% set l = l + l %}" * 40 + "{{ l }}",
    "list_repeat": "{{ ([1] * 5000000) * 2 }}",
    "power_chain": "{{ (((9 ** 64) ** 64) ** 64) ** 64 }}",
    "square_chain": "{% set n = 9 ** 64 %}" + "{% set n = n * n %}" * 40 + "{{ n }}",
    "nested_loops": (
        "{% set s = 'x' * 100000 %}"
        "{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}"
    ),
    "filtered_loops": (
        "{% set s = 'x' * 100000 %}"
        "{% for a in s %}{% for b in s if false %}{% endfor %}{% endfor %}"
    ),
    "recursive_macro": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
        "{% endmacro %}{{ f(60) }}"
    ),
    "scans": (
        "{% set s = 'x' * 5000000 %}"
        "{% for a in s %}{% if 'y' in s %}{% endif %}{% endfor %}"
    ),
    "title_loop": (
        "{% set s = 'ab ' * 1000000 %}"
        "{% for a in 'x' * 1000 %}{{ s | title | length }}{% endfor %}"
    ),
    "slices": (
        "{% set s = 'x' * 5000000 %}{% for a in s %}{{ s[1:] | length }}{% endfor %}"
    ),
    "set_block_prints": (
        "{% set s = 'x' * 5000000 %}{% set y %}"
        "{% for a in 'x' * 1000 %}{{ s }}{% endfor %}{% endset %}{{ y | length }}"
    ),
    "macro_text": (
        "{% macro m() %}{% for a in 'x' * 1000 %}"
        + "y" * 1_000_000
        + "{% endfor %}{% endmacro %}{{ m() | length }}"
    ),
}
# Escaping copies each printed value, so the HTML part needs its own case.
HTML_BOMBS = {
    "macro_prints": (
        "{% set s = 'x' * 5000000 %}{% macro m() %}"
        "{% for a in 'x' * 1000 %}{{ s }}{% endfor %}{% endmacro %}{{ m() | length }}"
    ),
}

_CHILD = """
import json, resource, sys
from sendarix_backends.templates import TemplateVersion
from sendarix_backends.templates.rendering import compile_template
from sendarix_core.errors import ValidationError
from tests.core.factories import T0

codes = {}
for part, bombs in json.loads(sys.stdin.read()).items():
    for name, source in bombs.items():
        parts = {"subject": None, "html": None, "text": None, part: source}
        version = TemplateVersion(version=1, created_at=T0, **parts)
        try:
            compile_template(name, version).render({})
            codes[name] = "rendered"
        except ValidationError as exc:
            codes[name] = exc.errors[0].to_dict()["code"]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"codes": codes, "peak_rss_kib": peak}))
"""


def _limit_child() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS_LIMIT, CPU_SECONDS_LIMIT))


@pytest.fixture(scope="module")
def bomb_results() -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=json.dumps({"text": BOMBS, "html": HTML_BOMBS}),
        capture_output=True,
        text=True,
        preexec_fn=_limit_child,
        timeout=CPU_SECONDS_LIMIT * 2,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    results: dict[str, Any] = json.loads(completed.stdout)
    return results


@pytest.mark.parametrize("name", sorted([*BOMBS, *HTML_BOMBS]))
def test_bomb_rejected_before_allocating(
    bomb_results: dict[str, Any], name: str
) -> None:
    assert bomb_results["codes"][name] == "template_not_allowed"


def test_bombs_stay_small(bomb_results: dict[str, Any]) -> None:
    assert bomb_results["peak_rss_kib"] < PEAK_RSS_LIMIT_KIB


def test_step_error_names_budget() -> None:
    compiled = compile_parts(text=BOMBS["nested_loops"])

    [error] = errors_of(compiled, {})

    assert "more than 2000000 steps" in error["message"]


def test_long_loop_within_budget() -> None:
    compiled = compile_parts(
        text="{% for item in items %}{{ item.name | upper }}{{ item.n | abs }}"
        "{% endfor %}"
    )

    rendered = compiled.render({"items": [{"name": "a", "n": -1}] * 100_000})

    assert rendered.text == "A1" * 100_000


def test_size_error_names_cap() -> None:
    compiled = compile_parts(text=BOMBS["replace"])

    [error] = errors_of(compiled, {})

    assert "replace would produce 2000000000 characters" in error["message"]


def test_power_error_names_bits() -> None:
    compiled = compile_parts(text="{{ (9 ** 64) ** 64 }}")

    [error] = errors_of(compiled, {})

    assert "would exceed 10000 bits" in error["message"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ [1, 2] | join(', ') }}", "1, 2"),
        ("{{ users | join(', ', attribute='name') }}", "Ada, Bo"),
        ("{{ 'a-b-c' | replace('-', '+') }}", "a+b+c"),
        ("{{ 'a-b-c' | replace('-', '+', 1) }}", "a+b-c"),
        ("{{ 'ab' | replace('', '.') }}", ".a.b."),
        ("{{ [1, 2, 3] | batch(2, 0) | list }}", "[[1, 2], [3, 0]]"),
        ("{{ [1, 2, 3] | slice(2) | list }}", "[[1, 2], [3]]"),
        ("{{ [1, 2, 3] | sum }} {{ [1.5] | sum(start=1) }}", "6 2.5"),
        ("{{ {'a': [1]} | tojson(1) }}", '{\n "a": [\n  1\n ]\n}'),
        ("{{ 9 ** 64 > 0 }} {{ 2 ** -1 }} {{ 3 * 4 }}", "True 0.5 12"),
        ("{{ 'ab' * 3 }} {{ [0] * 2 }}", "ababab [0, 0]"),
        ("{{ 'x' in 'xy' }} {{ 'xy'[1:] }} {{ 4 is divisibleby 2 }}", "True y True"),
        ("{% for u in users if u.name != 'Bo' %}{{ u.name }}{% endfor %}", "Ada"),
    ],
)
def test_bounded_operations_render(source: str, expected: str) -> None:
    compiled = compile_parts(text=source)

    rendered = compiled.render({"users": [{"name": "Ada"}, {"name": "Bo"}]})

    assert rendered.text == expected


def test_html_join_and_replace_escape() -> None:
    compiled = compile_parts(
        html="{{ [a, a] | join('<br>') }}|{{ a | replace('i', '<b>') }}"
    )

    rendered = compiled.render({"a": "<i>"})

    assert rendered.html == "&lt;i&gt;&lt;br&gt;&lt;i&gt;|&lt;&lt;b&gt;&gt;"


def test_recursive_loop_renders() -> None:
    compiled = compile_parts(
        text="{% for a in tree recursive %}{{ a.n }}{{ loop(a.c) }}{% endfor %}"
    )

    rendered = compiled.render({"tree": [{"n": 1, "c": [{"n": 2, "c": []}]}]})

    assert rendered.text == "12"


@pytest.mark.parametrize("name", ["urlize", "wordwrap", "indent", "center"])
def test_unsized_filters_removed(name: str) -> None:
    [error] = compile_errors(text=f"{{{{ 'x' | {name} }}}}")

    assert f"No filter named '{name}'" in error["message"]


@pytest.mark.parametrize(
    ("part", "source"),
    [("subject", "Hi {{ name }}"), ("text", "Hi {{ name }}")],
)
def test_printed_null_missing(part: str, source: str) -> None:
    compiled = compile_parts(**{part: source})

    [error] = errors_of(compiled, {"name": None})

    assert error["field"] == "template_data.name"
    assert error["code"] == "missing_variable"
    assert "'name', which is null" in error["message"]


@pytest.mark.parametrize(
    ("source", "field"),
    [
        ("{{ user.name }}", "template_data.user.name"),
        ("{{ user['name'] }}", "template_data.user.name"),
        ("{{ 'Hi ' ~ user.name }}", "template_data.user.name"),
        ("{% for u in [user] %}{{ u.name }}{% endfor %}", "template_data"),
        ("{{ user.name | upper }}", "template_data"),
    ],
)
def test_nested_null_missing(source: str, field: str) -> None:
    compiled = compile_parts(text=source)

    [error] = errors_of(compiled, {"user": {"name": None}})

    assert error["field"] == field
    assert error["code"] == "missing_variable"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{% if name %}x{% else %}y{% endif %}", "y"),
        ("{{ name is none }}", "True"),
        ("{{ name | default('there', true) }}", "there"),
        ("{{ name | tojson }}", "null"),
    ],
)
def test_null_tested_renders(source: str, expected: str) -> None:
    compiled = compile_parts(text=source)

    assert compiled.render({"name": None}).text == expected


def test_printed_mapping_json() -> None:
    compiled = compile_parts(text="{{ data }}", html="{{ data }}")

    rendered = compiled.render({"data": {"a": [1, None], "b": "é<"}})

    assert rendered.text == '{"a": [1, null], "b": "é<"}'
    assert rendered.html == "{&#34;a&#34;: [1, null], &#34;b&#34;: &#34;é&lt;&#34;}"


def test_concatenated_list_json() -> None:
    compiled = compile_parts(text="{{ 'ids: ' ~ ids }}")

    assert compiled.render({"ids": ["a", 1]}).text == 'ids: ["a", 1]'


def test_printed_generator_rejected() -> None:
    compiled = compile_parts(text="{{ users | map(attribute='name') }}")

    [error] = errors_of(compiled, {"users": [{"name": "Ada"}]})

    assert error["code"] == "template_error"
    assert "add |list or |join" in error["message"]


def test_printed_dict_view_json() -> None:
    compiled = compile_parts(text="{{ data.items() }} {{ data.keys() }}")

    assert compiled.render({"data": {"a": 1}}).text == '[["a", 1]] ["a"]'


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("{{ data.get }}", "method or function"),
        ("{% for x in data %}{{ loop }}{% endfor %}", "loop object"),
        ("{% macro m() %}x{% endmacro %}{{ m }}", "macro without calling it"),
    ],
)
def test_printed_non_data_rejected(source: str, kind: str) -> None:
    compiled = compile_parts(text=source)

    [error] = errors_of(compiled, {"data": {"a": 1}})

    assert error["code"] == "template_error"
    assert f"prints a {kind}, which is not data" in error["message"]
    assert "0x" not in error["message"]


@pytest.mark.anyio
async def test_api_render_null_422(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/v1/templates",
        json={"name": "greeting", "subject": "Hi {{ name }}", "text": "Hello"},
    )
    assert created.status_code == 201

    response = await client.post(
        "/v1/templates/greeting/render", json={"template_data": {"name": None}}
    )

    [error] = response.json()["error"]["errors"]
    assert response.status_code == 422
    assert error["field"] == "template_data.name"
    assert error["code"] == "missing_variable"


@pytest.mark.anyio
async def test_api_send_power_422(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/v1/templates", json={"name": "bomb", "text": "{{ ((9 ** 64) ** 64) ** 64 }}"}
    )
    assert created.status_code == 201
    body = message_body(template="bomb", template_data={})
    del body["text"]

    response = await client.post("/v1/messages", json=body)

    [error] = response.json()["error"]["errors"]
    assert response.status_code == 422
    assert error["code"] == "template_not_allowed"
