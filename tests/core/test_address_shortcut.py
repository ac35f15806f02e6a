"""Plain addresses: the shortcut in ``parse_address`` gives what parsing gives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sendarix_core.addresses import AddressError, _parse_plain, parse_address
from sendarix_core.model import Address

ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~.-"
DOMAIN = "abcXYZ019.-"
NAME = "abcXYZ019.' -"


def general(value: str) -> Address | AddressError:
    """Return what the parser without the shortcut returns for ``value``.

    A trailing space keeps the value off the shortcut, and the parser
    strips it.
    """
    try:
        return parse_address(value + " ")
    except AddressError as error:
        return error


def check(value: str) -> None:
    """Assert that a value the shortcut takes parses the same without it."""
    plain = _parse_plain(value)
    if plain is not None:
        assert general(value) == plain


local_parts = st.text(ATEXT, min_size=1, max_size=70)
domain_names = st.text(DOMAIN, min_size=1, max_size=70)


@given(local_parts, domain_names)
def test_bare_address_matches_parsing(local: str, domain: str) -> None:
    check(f"{local}@{domain}")


@given(st.text(NAME + '\t<>"', max_size=1000), local_parts, domain_names)
def test_name_address_matches_parsing(name: str, local: str, domain: str) -> None:
    check(f"{name}<{local}@{domain}>")


@given(st.text(ATEXT + DOMAIN + ' \t"<>@()[],üß\u00a0', max_size=40))
def test_any_text_matches_parsing(value: str) -> None:
    check(value)


def test_examples_take_the_shortcut() -> None:
    assert _parse_plain("ada@Example.COM") == Address("ada", "example.com")
    assert _parse_plain("Ada  Lovelace <Ada@example.com>") == Address(
        "Ada", "example.com", "Ada Lovelace"
    )
    assert _parse_plain('"Ada" <ada@example.com>') is None
    assert _parse_plain("ada@localhost") is None
    assert _parse_plain("ada@xn--bcher-kva.test") is None
    assert _parse_plain(f"{'A' * 1000} <ada@example.com>") is None
