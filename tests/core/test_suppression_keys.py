"""Suppression keys: the plain-address shortcut gives what parsing gives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sendarix_core.addresses import AddressError, parse_address
from sendarix_core.suppression import normalize_recipient

ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~.-"
DOMAIN = "abcXYZ019.-"


def parsed_key(email: str) -> str:
    text = email.strip()
    try:
        return parse_address(text).email.lower()
    except AddressError:
        return text.lower()


plain_addresses = st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.text(ATEXT, min_size=1, max_size=70),
    st.text(DOMAIN, min_size=1, max_size=70),
)


@given(plain_addresses)
def test_plain_address_key_matches_parsing(email: str) -> None:
    assert normalize_recipient(email) == parsed_key(email)


@given(st.text(ATEXT + DOMAIN + ' \t"<>@()[]üß\u00a0', max_size=40))
def test_any_text_key_matches_parsing(email: str) -> None:
    assert normalize_recipient(email) == parsed_key(email)


def test_key_examples() -> None:
    assert normalize_recipient(" Ada@Example.COM ") == "ada@example.com"
    assert normalize_recipient("user@bücher.test") == "user@xn--bcher-kva.test"
    assert normalize_recipient('"a b"@example.com') == '"a b"@example.com'
    assert normalize_recipient("Ada <ada@example.com>") == "ada@example.com"
