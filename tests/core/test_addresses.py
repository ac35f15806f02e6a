from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sendarix_core.addresses import (
    AddressError,
    find_control_character,
    find_header_injection,
    parse_address,
    parse_domain,
    quote_value,
)
from sendarix_core.model import Address
from tests.core.strategies import addresses

VALID = [
    ("ada@example.com", Address("ada", "example.com")),
    ("  ada@example.com\t", Address("ada", "example.com")),
    ("Ada@Example.COM", Address("Ada", "example.com")),
    ("Ada <ada@example.com>", Address("ada", "example.com", "Ada")),
    ("Ada  Lovelace <ada@example.com>", Address("ada", "example.com", "Ada Lovelace")),
    ("<ada@example.com>", Address("ada", "example.com")),
    ("Ada < ada@example.com >", Address("ada", "example.com", "Ada")),
    (
        '"Lovelace, Ada" <ada@example.com>',
        Address("ada", "example.com", "Lovelace, Ada"),
    ),
    (
        '"Ada \\"The Countess\\"" <ada@example.com>',
        Address("ada", "example.com", 'Ada "The Countess"'),
    ),
    (
        'Ada "<Countess>" Lovelace <ada@example.com>',
        Address("ada", "example.com", "Ada <Countess> Lovelace"),
    ),
    (
        "John Q. Public <jqp@example.com>",
        Address("jqp", "example.com", "John Q. Public"),
    ),
    ("Jörg <joerg@example.de>", Address("joerg", "example.de", "Jörg")),
    ("ada.lovelace+news@example.com", Address("ada.lovelace+news", "example.com")),
    ("!#$%&'*+/=?^_`{|}~-@example.com", Address("!#$%&'*+/=?^_`{|}~-", "example.com")),
    ('"john doe"@example.com', Address('"john doe"', "example.com")),
    ('"a@b"@example.com', Address('"a@b"', "example.com")),
    ('"a\\"b c"@example.com', Address('"a\\"b c"', "example.com")),
    ('"john"@example.com', Address("john", "example.com")),
    ('"\\j\\o\\h\\n"@example.com', Address("john", "example.com")),
    ("ada@mail.sub.example.com", Address("ada", "mail.sub.example.com")),
    ("ada@123.example", Address("ada", "123.example")),
    ("ada@a-b.example", Address("ada", "a-b.example")),
    ("user@bücher.example", Address("user", "xn--bcher-kva.example")),
    ("user@BÜCHER.example", Address("user", "xn--bcher-kva.example")),
    ("user@xn--bcher-kva.example", Address("user", "xn--bcher-kva.example")),
    (
        "user@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",
        Address("user", "example.com"),
    ),
    ("用户@例子.广告", Address("用户", "xn--fsqu00a.xn--4rr70v")),
    ("jörg@example.de", Address("jörg", "example.de")),
]


@pytest.mark.parametrize(("value", "expected"), VALID)
def test_parse_valid(value: str, expected: Address) -> None:
    assert parse_address(value) == expected


INVALID = [
    ("", "invalid_address"),
    ("   ", "invalid_address"),
    ("bob", "invalid_address"),
    ("bob@", "missing_domain"),
    ("@example.com", "invalid_address"),
    ("a..b@example.com", "invalid_address"),
    (".ada@example.com", "invalid_address"),
    ("ada.@example.com", "invalid_address"),
    ("a b@example.com", "invalid_address"),
    ("Ada ada@example.com", "invalid_address"),
    ("a@b@example.com", "invalid_address"),
    ("ada(comment)@example.com", "invalid_address"),
    ("ada\u00a0x@example.com", "invalid_address"),
    ('"ada@example.com', "invalid_address"),
    ('"a"b@example.com', "invalid_address"),
    ('"a"."b"@example.com', "invalid_address"),
    ('""@example.com', "invalid_address"),
    ('"a\tb"@example.com', "invalid_address"),
    ("<@relay.example:ada@example.com>", "invalid_address"),
    ("Ada <ada@example.com", "invalid_address"),
    ("Ada ada@example.com>", "invalid_address"),
    ("Ada <ada@example.com> trailing", "invalid_address"),
    ("Ada <<ada@example.com>>", "invalid_address"),
    ("Ada >ada@example.com<", "invalid_address"),
    ("<>", "invalid_address"),
    ("undisclosed-recipients:;", "invalid_address"),
    ("ada@example.com,", "invalid_address"),
    ("Ada <a,b@example.com>", "invalid_address"),
    ("a@example.com, b@example.org", "multiple_addresses"),
    ("Ada <a@example.com>, Bob <b@example.org>", "multiple_addresses"),
    ("Lovelace, Ada <ada@example.com>", "display_name_invalid"),
    ("Ada (work) <ada@example.com>", "display_name_invalid"),
    ("Ada: <ada@example.com>", "display_name_invalid"),
    ("Ada@Home <ada@example.com>", "display_name_invalid"),
    ("ada@[192.0.2.1]", "invalid_domain"),
    ("ada@[IPv6:2001:db8::1]", "invalid_domain"),
    ("ada@192.0.2.1", "invalid_domain"),
    ("ada@localhost", "invalid_domain"),
    ("ada@example.com.", "invalid_domain"),
    ("ada@.example.com", "invalid_domain"),
    ("ada@example..com", "invalid_domain"),
    ("ada@-example.com", "invalid_domain"),
    ("ada@example-.com", "invalid_domain"),
    ("ada@exa_mple.com", "invalid_domain"),
    ("ada@exa mple.com", "invalid_domain"),
    ("ada@xn--zz.com", "invalid_domain"),
    ("ada@bü cher.example", "invalid_domain"),
    ("ada@bücher.example.", "invalid_domain"),
    ("ada@\u0663.example", "invalid_domain"),
    ("ada@example.com\r\nBcc: eve@example.org", "header_injection"),
    ("ada@example.com\n", "header_injection"),
    ("Ada\r <ada@example.com>", "header_injection"),
    ("ada\x00@example.com", "header_injection"),
    ("ada\u2028@example.com", "header_injection"),
    ("ada\x85@example.com", "header_injection"),
    ("ada\x1b@example.com", "invalid_address"),
    ("ada\x7f@example.com", "invalid_address"),
    ("ada\ud800@example.com", "invalid_address"),
    ("a" * 65 + "@example.com", "address_too_long"),
    ("ü" * 33 + "@example.com", "address_too_long"),
    ("ada@" + "a" * 64 + ".com", "invalid_domain"),
    ("A" * 999 + " <ada@example.com>", "address_too_long"),
]


@pytest.mark.parametrize(("value", "code"), INVALID)
def test_parse_invalid(value: str, code: str) -> None:
    with pytest.raises(AddressError) as caught:
        parse_address(value)
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("bob@", "'bob@' has no domain"),
        ("bob", "'bob' has no '@'"),
        ("ada@[192.0.2.1]", "uses a domain literal"),
        ("ada@localhost", "has no dot"),
        ("a@example.com, b@example.org", "contains 2 addresses; this field takes one"),
        ("Lovelace, Ada <ada@example.com>", "'Lovelace, Ada' contains a comma"),
        ("a..b@example.com", "two dots in a row"),
        ("ada@-example.com", "'-example', which starts or ends with a hyphen"),
        ("a" * 65 + "@example.com", "local part of 65 bytes; the maximum is 64"),
    ],
)
def test_error_message_names_value(value: str, message: str) -> None:
    with pytest.raises(AddressError) as caught:
        parse_address(value)
    assert message in str(caught.value)


def test_error_message_truncates_value() -> None:
    with pytest.raises(AddressError) as caught:
        parse_address("x" * 200)
    assert "x" * 59 + "…'" in str(caught.value)
    assert "x" * 60 not in str(caught.value)


def test_address_error_is_value_error() -> None:
    with pytest.raises(ValueError, match="has no domain"):
        parse_address("bob@")


def test_length_limits_inclusive() -> None:
    value = "a" * 64 + "@" + ("b" * 61 + ".") * 3 + "c" * 3
    assert len(value) == 254
    assert parse_address(value).email == value


def test_address_of_255_rejected() -> None:
    value = "a" * 64 + "@" + ("b" * 61 + ".") * 3 + "c" * 4
    with pytest.raises(AddressError) as caught:
        parse_address(value)
    assert caught.value.code == "address_too_long"


def test_label_of_63_accepted() -> None:
    domain = "a" * 63 + ".com"
    assert parse_address(f"ada@{domain}").domain == domain


def test_single_label_allowed_when_asked() -> None:
    address = parse_address("postmaster@localhost", allow_single_label=True)
    assert address.domain == "localhost"


def test_single_label_ip_still_rejected() -> None:
    with pytest.raises(AddressError) as caught:
        parse_address("ada@127", allow_single_label=True)
    assert caught.value.code == "invalid_domain"


def test_idn_domain_to_a_label() -> None:
    address = parse_address("user@bücher.example")
    assert address.domain == "xn--bcher-kva.example"
    assert address.smtputf8 is False


def test_non_ascii_local_part_flags_smtputf8() -> None:
    address = parse_address("jörg@example.de")
    assert address.local_part == "jörg"
    assert address.smtputf8 is True


def test_ascii_address_not_smtputf8() -> None:
    assert parse_address("Jörg <joerg@example.de>").smtputf8 is False


def test_quoted_local_part_kept_in_email() -> None:
    address = parse_address('"john doe"@example.com')
    assert address.email == '"john doe"@example.com'


OBJECTS: list[tuple[dict[str, Any], Address]] = [
    (
        {"name": "Lovelace, Ada", "email": "ada@example.com"},
        Address("ada", "example.com", "Lovelace, Ada"),
    ),
    ({"email": "ada@example.com"}, Address("ada", "example.com")),
    ({"name": None, "email": "ada@example.com"}, Address("ada", "example.com")),
    ({"name": "", "email": "ada@example.com"}, Address("ada", "example.com")),
    (
        {"name": ' "Ada" <the\tCountess> ', "email": "ada@bücher.example"},
        Address("ada", "xn--bcher-kva.example", '"Ada" <the Countess>'),
    ),
    (
        {"name": "Ada", "email": '"ada lovelace"@example.com'},
        Address('"ada lovelace"', "example.com", "Ada"),
    ),
]


@pytest.mark.parametrize(("value", "expected"), OBJECTS)
def test_parse_object_form(value: dict[str, Any], expected: Address) -> None:
    assert parse_address(value) == expected


OBJECT_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({}, "invalid_address"),
    ({"name": "Ada"}, "invalid_address"),
    ({"email": 42}, "invalid_address"),
    ({"email": "ada@example.com", "mail": "x"}, "invalid_address"),
    ({"email": "Ada <ada@example.com>"}, "invalid_address"),
    ({"email": "<ada@example.com>"}, "invalid_address"),
    ({"email": "bob@"}, "missing_domain"),
    ({"name": 42, "email": "ada@example.com"}, "display_name_invalid"),
    (
        {"name": "Ada\r\nBcc: eve@example.org", "email": "ada@example.com"},
        "header_injection",
    ),
    ({"name": "Ada\x07", "email": "ada@example.com"}, "invalid_address"),
    ({"name": "A" * 999, "email": "ada@example.com"}, "display_name_invalid"),
]


@pytest.mark.parametrize(("value", "code"), OBJECT_ERRORS)
def test_parse_object_invalid(value: dict[str, Any], code: str) -> None:
    with pytest.raises(AddressError) as caught:
        parse_address(value)
    assert caught.value.code == code


@pytest.mark.parametrize("value", [42, None, ["ada@example.com"], b"ada@example.com"])
def test_parse_wrong_type(value: Any) -> None:
    with pytest.raises(AddressError) as caught:
        parse_address(value)
    assert caught.value.code == "invalid_address"


@given(addresses())
def test_round_trip(address: Address) -> None:
    assert parse_address(str(address)) == address


@given(addresses())
def test_object_form_round_trip(address: Address) -> None:
    value = {"name": address.display_name, "email": address.email}
    assert parse_address(value) == address


@given(st.text(max_size=60) | st.text('a.@"\\<>,;:()[] \tü-\r', max_size=30))
def test_parse_raises_only_address_error(value: str) -> None:
    try:
        address = parse_address(value)
    except AddressError:
        return
    assert find_header_injection(str(address)) is None


@given(
    st.text(max_size=20),
    st.sampled_from(["\r", "\n", "\r\n", "\x00"]),
    st.text(max_size=20),
)
def test_line_break_rejected(before: str, line_break: str, after: str) -> None:
    with pytest.raises(AddressError) as caught:
        parse_address(f"{before}ada@example.com{line_break}{after}")
    assert caught.value.code == "header_injection"


@pytest.mark.parametrize(
    "character",
    ["\r", "\n", "\x00", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029"],
)
def test_find_header_injection(character: str) -> None:
    assert find_header_injection(f"a{character}b") == character


def test_find_header_injection_clean() -> None:
    assert find_header_injection("Ada Lovelace\tü") is None


@pytest.mark.parametrize("character", ["\x01", "\x1b", "\x7f", "\x9f", "\ud800"])
def test_find_control_character(character: str) -> None:
    assert find_control_character(f"a{character}b") == character


def test_find_control_character_allows_tab() -> None:
    assert find_control_character("a\tb") is None


def test_quote_value_short() -> None:
    assert quote_value("bob@") == "'bob@'"


def test_quote_value_long() -> None:
    assert quote_value("x" * 100, limit=10) == repr("x" * 9 + "…")


@pytest.mark.parametrize(
    ("value", "domain"),
    [
        ("Example.TEST.", "example.test"),
        (" acme.example ", "acme.example"),
        ("Bücher.example", "xn--bcher-kva.example"),
    ],
)
def test_parse_domain_normalizes(value: str, domain: str) -> None:
    assert parse_domain(value) == domain


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not a domain", "the domain 'not a domain' has the label 'not a domain'"),
        ("localhost", "the domain 'localhost' has no dot"),
        ("a..b", "the domain 'a..b' has an empty label"),
        ("192.0.2.1", "the domain '192.0.2.1' looks like an IP address"),
        (".", "'.' is not a domain name"),
        ("acme.example..", "the domain 'acme.example.' has an empty label"),
    ],
)
def test_parse_domain_rejects(value: str, message: str) -> None:
    with pytest.raises(AddressError) as raised:
        parse_domain(value)

    assert str(raised.value).startswith(message)
