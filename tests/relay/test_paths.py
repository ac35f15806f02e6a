"""MAIL and RCPT paths: the relay's reader against aiosmtpd's own."""

from __future__ import annotations

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from sendarix_http.relay.protocol import RelaySMTP

_LOCAL_PART = st.from_regex(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,12}", fullmatch=True)
_DOMAIN = st.from_regex(r"[A-Za-z0-9.-]{1,20}", fullmatch=True)
_REST = st.sampled_from(
    [
        "",
        " SIZE=100",
        "  BODY=8BITMIME SIZE=5",
        " ",
        "\t",
        "x",
        ">",
        " (c) SIZE=1",
        "(c)",
        " <",
        "@",
        "\u00e9",
        " SMTPUTF8",
    ]
)


@st.composite
def _paths(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return f"<{draw(_LOCAL_PART)}@{draw(_DOMAIN)}>{draw(_REST)}"
    return draw(st.text(max_size=30))


@pytest.fixture(scope="module")
def session() -> RelaySMTP:
    return RelaySMTP(object(), max_commands=10)


@settings(max_examples=1000, deadline=None)
@given(_paths())
def test_path_read_as_aiosmtpd_does(session: RelaySMTP, path: str) -> None:
    try:
        expected = SMTP._getaddr(session, path)
    except IndexError:
        # The email package's parser fails on some paths, such as "a@";
        # the relay calls them malformed instead.
        expected = (None, None)
    if path.lstrip().startswith("<") and ">" not in path:
        # RFC 5321 requires the closing bracket, which aiosmtpd does not.
        expected = (None, None)
    assert session._getaddr(path) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("<ada@acme.example> SIZE=100", ("ada@acme.example", "SIZE=100")),
        ('<"a b"@acme.example>', ('"a b"@acme.example', "")),
        ("<ada@[192.0.2.1]>", ("ada@[192.0.2.1]", "")),
        ("<ada@acme.example> (note) SIZE=1", ("ada@acme.example", "SIZE=1")),
    ],
)
def test_path_examples(
    session: RelaySMTP, path: str, expected: tuple[str, str]
) -> None:
    assert session._getaddr(path) == expected


@pytest.mark.parametrize("path", ["<ada@acme.example", "<ada@acme.example SIZE=1"])
def test_path_without_closing_bracket(session: RelaySMTP, path: str) -> None:
    assert session._getaddr(path) == (None, None)


def test_path_local_part_limit() -> None:
    limited = RelaySMTP(object(), max_commands=10)
    limited.local_part_limit = 64
    assert limited._getaddr(f"<{'a' * 65}@acme.example>") == (None, None)
    assert limited._getaddr(f"<{'a' * 64}@acme.example>") == (
        f"{'a' * 64}@acme.example",
        "",
    )
