"""Parsing of email addresses given in API requests.

Accepted forms are a bare addr-spec (``ada@example.com``), a name-addr
(``Ada <ada@example.com>``, ``"Lovelace, Ada" <ada@example.com>``) and the
object form ``{"name": "Lovelace, Ada", "email": "ada@example.com"}``.

The parser covers the subset of RFC 5322 that real senders use, extended by
RFC 6532 to UTF-8. It rejects comments, routes, groups, domain literals and
every control character, so nothing it returns can end a header line or
smuggle a second recipient into one.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from enum import StrEnum

import idna

from sendarix_core.errors import SendarixError
from sendarix_core.model import Address

__all__ = [
    "MAX_ADDRESS_OCTETS",
    "MAX_DOMAIN_OCTETS",
    "MAX_LABEL_OCTETS",
    "MAX_LOCAL_PART_OCTETS",
    "AddressError",
    "AddressErrorCode",
    "find_control_character",
    "find_header_injection",
    "parse_address",
    "parse_domain",
    "quote_value",
]

# Limits from RFC 5321 section 4.5.3.1, in octets of UTF-8. 254 is the
# longest path (256 octets) without its angle brackets.
MAX_LOCAL_PART_OCTETS = 64
MAX_DOMAIN_OCTETS = 255
MAX_LABEL_OCTETS = 63
MAX_ADDRESS_OCTETS = 254

# Maximum length of an address string (display name included) and of a
# display name in the object form. It is the line length limit of RFC 5322.
_MAX_INPUT_LENGTH = 998

# CR, LF and NUL, plus every other character that ``str.splitlines`` treats
# as a line boundary, because a consumer that splits on them would see a new
# header line.
_HEADER_INJECTION = re.compile("[\r\n\x00\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")

# Control characters that _HEADER_INJECTION does not match (C0 except tab,
# DEL and C1), and lone surrogates, because no UTF-8 encoder accepts them.
_CONTROL = re.compile("[\x01-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f\ud800-\udfff]")

# atext of RFC 5322 section 3.2.3 plus the non-ASCII characters of RFC 6532.
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff"
_DOT_ATOM = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
_ATEXT_CHARACTER = re.compile(rf"[{_ATEXT}]")

# Characters of an unquoted display name: atext, the dot many senders leave
# unquoted (``John Q. Public``) and whitespace.
_PHRASE_CHARACTER = re.compile(rf"[{_ATEXT}. \t]")
_PHRASE = re.compile(rf"[{_ATEXT}. \t]*")
_PHRASE_SPACE = re.compile(r"[ \t]+")

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")

# Characters that need a backslash in front of them inside a quoted string.
_QUOTED_SPECIALS = frozenset('"\\')

_OBJECT_KEYS = frozenset({"name", "email"})

# The common shapes in plain ASCII, ``ada@example.com`` and ``Ada Lovelace
# <ada@example.com>``, without quotes, comments or whitespace inside the
# brackets. ``_parse_plain`` handles them without the general parser and
# must return what it returns; a property test checks that.
_PLAIN_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_PLAIN_LOCAL = rf"[{_PLAIN_ATEXT}]+(?:\.[{_PLAIN_ATEXT}]+)*"
_PLAIN_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z0-9-]+"
_PLAIN_ADDRESS = re.compile(
    rf"(?:([{_PLAIN_ATEXT}. ]*)<({_PLAIN_LOCAL})@({_PLAIN_DOMAIN})>"
    rf"|({_PLAIN_LOCAL})@({_PLAIN_DOMAIN}))"
)


class AddressErrorCode(StrEnum):
    """Stable reasons for rejecting an address, as shown to API clients."""

    INVALID_ADDRESS = "invalid_address"
    MISSING_DOMAIN = "missing_domain"
    INVALID_DOMAIN = "invalid_domain"
    DISPLAY_NAME_INVALID = "display_name_invalid"
    MULTIPLE_ADDRESSES = "multiple_addresses"
    ADDRESS_TOO_LONG = "address_too_long"
    HEADER_INJECTION = "header_injection"


class AddressError(SendarixError, ValueError):
    """An address was rejected.

    ``code`` is an ``AddressErrorCode`` and the message names the value.
    """

    def __init__(self, code: AddressErrorCode, message: str) -> None:
        self.code = code
        super().__init__(message)


def quote_value(value: str, limit: int = 60) -> str:
    """Return ``repr(value)`` cut to ``limit`` characters with an ellipsis."""
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return repr(value)


def find_header_injection(text: str) -> str | None:
    """Return the first character of ``text`` that could end a header line.

    These are CR, LF, NUL and the other line boundaries of ``str.splitlines``
    (VT, FF, FS, GS, RS, NEL, U+2028, U+2029).
    """
    match = _HEADER_INJECTION.search(text)
    return match.group() if match else None


def find_control_character(text: str) -> str | None:
    """Return the first control character or lone surrogate in ``text``.

    Tab is allowed. Characters found by ``find_header_injection`` are not
    reported here, so callers check that first.
    """
    match = _CONTROL.search(text)
    return match.group() if match else None


def parse_address(
    value: str | Mapping[str, object], *, allow_single_label: bool = False
) -> Address:
    """Parse one address in string or object form.

    Domains come back as lowercase ASCII, with IDNs converted to A-labels
    (IDNA 2008 with the UTS 46 mapping). A domain must contain a dot unless
    ``allow_single_label`` is true, as for ``postmaster@localhost``.

    Raises ``AddressError`` naming the offending value.
    """
    if isinstance(value, Mapping):
        return _parse_object(value, allow_single_label)
    if not isinstance(value, str):
        raise AddressError(
            AddressErrorCode.INVALID_ADDRESS,
            "expected an address string or an object with 'name' and 'email', "
            f"got {type(value).__name__}",
        )

    plain = _parse_plain(value)
    if plain is not None:
        return plain

    _check_text(value, AddressErrorCode.ADDRESS_TOO_LONG)
    text = value.strip(" \t")
    if not text:
        raise AddressError(AddressErrorCode.INVALID_ADDRESS, "the address is empty")

    display_name, addr_spec = _split_name_addr(text, value)
    local_part, domain = _parse_addr_spec(addr_spec, value, allow_single_label)
    return Address(local_part, domain, display_name)


def parse_domain(value: str) -> str:
    """Parse a domain name, such as a sender domain an API key is limited to.

    Surrounding whitespace and one trailing dot (the DNS root) are removed,
    and the domain comes back as ``parse_address`` returns the domain of an
    address: lowercase ASCII, IDNs as A-labels, with at least one dot.

    Raises ``AddressError`` naming the domain.
    """
    text = value.strip()
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise AddressError(
            AddressErrorCode.INVALID_DOMAIN,
            f"{quote_value(value)} is not a domain name; expected a name such as "
            "acme.example",
        )
    return _normalize_domain(text, text, allow_single_label=False)


def _domain_subject(domain: str, value: str) -> str:
    """Return how a message refers to ``domain``, alone or within address ``value``."""
    if "@" not in value:
        # parse_domain passes the domain as written in both arguments.
        return f"the domain {quote_value(value)}"
    return f"the domain {quote_value(domain)} of {quote_value(value)}"


def _parse_plain(value: str) -> Address | None:
    """Parse a plain ASCII address; None when the general parser must decide.

    Only a value that passes every check comes back, so errors keep the
    general parser's messages.
    """
    if len(value) > _MAX_INPUT_LENGTH:
        return None
    match = _PLAIN_ADDRESS.fullmatch(value)
    if match is None:
        return None
    name, local_part, domain, bare_local, bare_domain = match.groups()
    if name is None:
        name, local_part, domain = "", bare_local, bare_domain
    domain = domain.lower()
    labels = domain.split(".")
    if (
        len(local_part) > MAX_LOCAL_PART_OCTETS
        or len(local_part) + 1 + len(domain) > MAX_ADDRESS_OCTETS
        or "xn--" in domain
        or labels[-1].isdigit()
        or any(
            len(label) > MAX_LABEL_OCTETS or label[0] == "-" or label[-1] == "-"
            for label in labels
        )
    ):
        return None
    return Address(local_part, domain, " ".join(name.split()))


def _parse_object(value: Mapping[str, object], allow_single_label: bool) -> Address:
    unknown = sorted(str(key) for key in value if key not in _OBJECT_KEYS)
    if unknown:
        raise AddressError(
            AddressErrorCode.INVALID_ADDRESS,
            f"unexpected key {quote_value(unknown[0])} in the address object; "
            "expected 'name' and 'email'",
        )

    email = value.get("email")
    if not isinstance(email, str):
        got = "nothing" if email is None else type(email).__name__
        raise AddressError(
            AddressErrorCode.INVALID_ADDRESS,
            f"expected 'email' to be an address string, got {got}",
        )
    address = parse_address(email, allow_single_label=allow_single_label)
    if address.display_name or email.strip(" \t").endswith(">"):
        raise AddressError(
            AddressErrorCode.INVALID_ADDRESS,
            f"'email' must be a bare address such as 'ada@example.com', got "
            f"{quote_value(email)}; put the display name in 'name'",
        )

    name = _parse_object_name(value.get("name"))
    return Address(address.local_part, address.domain, name)


def _parse_object_name(name: object) -> str:
    if name is None:
        return ""
    if not isinstance(name, str):
        raise AddressError(
            AddressErrorCode.DISPLAY_NAME_INVALID,
            f"expected 'name' to be a string, got {type(name).__name__}",
        )

    _check_text(name, AddressErrorCode.DISPLAY_NAME_INVALID)
    return " ".join(name.split())


def _check_text(text: str, too_long_code: AddressErrorCode) -> None:
    """Reject line breaks, control characters and overlong input."""
    injected = find_header_injection(text)
    if injected is not None:
        raise AddressError(
            AddressErrorCode.HEADER_INJECTION,
            f"{quote_value(text)} contains the line break or NUL character "
            f"U+{ord(injected):04X}; addresses must be on one line",
        )

    control = find_control_character(text)
    if control is not None:
        raise AddressError(
            AddressErrorCode.INVALID_ADDRESS,
            f"{quote_value(text)} contains the control character U+{ord(control):04X}",
        )

    if len(text) > _MAX_INPUT_LENGTH:
        raise AddressError(
            too_long_code,
            f"{quote_value(text)} is {len(text)} characters long; "
            f"the maximum is {_MAX_INPUT_LENGTH}",
        )


def _split_name_addr(text: str, value: str) -> tuple[str, str]:
    """Split ``Name <addr-spec>`` into its display name and addr-spec.

    A string without angle brackets is a bare addr-spec with no name.
    """
    specials = _find_unquoted(text, value, "<>,")
    if "," in specials:
        _raise_for_comma(text, value, specials)

    opening = specials.get("<", [])
    closing = specials.get(">", [])
    if not opening and not closing:
        return "", text
    if len(opening) != 1 or len(closing) != 1 or closing[0] != len(text) - 1:
        raise AddressError(
            AddressErrorCode.INVALID_ADDRESS,
            f"{quote_value(value)} is not of the form 'Name <address>'",
        )
    if closing[0] < opening[0]:
        raise AddressError(
            AddressErrorCode.INVALID_ADDRESS,
            f"{quote_value(value)} has '>' before '<'",
        )

    start = opening[0]
    display_name = _parse_display_name(text[:start], value)
    addr_spec = text[start + 1 : -1].strip(" \t")
    return display_name, addr_spec


def _find_unquoted(text: str, value: str, characters: str) -> dict[str, list[int]]:
    """Return the positions of ``characters`` outside quoted strings.

    A backslash inside a quoted string escapes the next character.
    """
    positions: dict[str, list[int]] = {}
    if '"' not in text:
        # Nothing is quoted, so every occurrence counts.
        for character in characters:
            index = text.find(character)
            while index != -1:
                positions.setdefault(character, []).append(index)
                index = text.find(character, index + 1)
        return positions

    quoted = False
    escaped = False
    for index, character in enumerate(text):
        if escaped:
            escaped = False
        elif quoted and character == "\\":
            escaped = True
        elif character == '"':
            quoted = not quoted
        elif not quoted and character in characters:
            positions.setdefault(character, []).append(index)

    if quoted:
        raise AddressError(
            AddressErrorCode.INVALID_ADDRESS,
            f"{quote_value(value)} has an opening '\"' with no closing one",
        )
    return positions


def _raise_for_comma(text: str, value: str, specials: dict[str, list[int]]) -> None:
    """Raise for an unquoted comma: a list of addresses or an unquoted name."""
    bounds = [-1, *specials[","], len(text)]
    parts = [text[start + 1 : end] for start, end in itertools.pairwise(bounds)]
    addresses = [part for part in parts if "@" in part]
    if len(addresses) > 1:
        raise AddressError(
            AddressErrorCode.MULTIPLE_ADDRESSES,
            f"{quote_value(value)} contains {len(addresses)} addresses; "
            "this field takes one",
        )

    opening = specials.get("<")
    if opening and specials[","][0] < opening[0]:
        name = text[: opening[0]].strip(" \t")
        raise AddressError(
            AddressErrorCode.DISPLAY_NAME_INVALID,
            f"the display name {quote_value(name)} contains a comma; quote it "
            f"('\"{name}\" <…>') or use the object form "
            "{'name': …, 'email': …}",
        )
    raise AddressError(
        AddressErrorCode.INVALID_ADDRESS,
        f"{quote_value(value)} contains a comma outside quotes",
    )


def _parse_display_name(text: str, value: str) -> str:
    """Decode a phrase of atoms and quoted strings into its text.

    Runs of whitespace outside quotes become one space.
    """
    if '"' not in text and _PHRASE.fullmatch(text):
        return _PHRASE_SPACE.sub(" ", text).strip(" ")

    pieces: list[str] = []
    index = 0
    while index < len(text):
        character = text[index]
        if character == '"':
            content, index = _read_quoted_string(text, index, value)
            pieces.append(content)
        elif character in " \t":
            if pieces and pieces[-1] != " ":
                pieces.append(" ")
            index += 1
        elif _PHRASE_CHARACTER.fullmatch(character):
            pieces.append(character)
            index += 1
        else:
            raise AddressError(
                AddressErrorCode.DISPLAY_NAME_INVALID,
                f"the display name {quote_value(text.strip())} contains "
                f"{character!r}; quote the name or use the object form "
                "{'name': …, 'email': …}",
            )
    return "".join(pieces).strip(" ")


def _read_quoted_string(text: str, start: int, value: str) -> tuple[str, int]:
    """Read the quoted string opening at ``start``.

    Returns its unescaped content and the index just past the closing quote.
    The caller has already checked that the quotes are balanced.
    """
    content: list[str] = []
    index = start + 1
    while text[index] != '"':
        if text[index] == "\\":
            index += 1
        content.append(text[index])
        index += 1
    return "".join(content), index + 1


def _parse_addr_spec(
    addr_spec: str, value: str, allow_single_label: bool
) -> tuple[str, str]:
    """Split ``local@domain`` into the canonical local part and ASCII domain."""
    if addr_spec.startswith('"'):
        content, end = _read_quoted_string(addr_spec, 0, value)
        local_part = _format_local_part(content, value)
        rest = addr_spec[end:]
        if not rest.startswith("@"):
            raise AddressError(
                AddressErrorCode.INVALID_ADDRESS,
                f"{quote_value(value)} must have '@' right after the quoted local part",
            )
        domain = rest[1:]
    else:
        local_part, domain = _split_at_sign(addr_spec, value)
        _check_dot_atom(local_part, value)

    local_octets = len(local_part.encode())
    if local_octets > MAX_LOCAL_PART_OCTETS:
        raise AddressError(
            AddressErrorCode.ADDRESS_TOO_LONG,
            f"{quote_value(value)} has a local part of {local_octets} bytes; "
            f"the maximum is {MAX_LOCAL_PART_OCTETS}",
        )

    domain = _normalize_domain(domain, value, allow_single_label)
    total_octets = local_octets + 1 + len(domain)
    if total_octets > MAX_ADDRESS_OCTETS:
        raise AddressError(
            AddressErrorCode.ADDRESS_TOO_LONG,
            f"{quote_value(value)} is {total_octets} bytes long; "
            f"the maximum is {MAX_ADDRESS_OCTETS}",
        )
    return local_part, domain


def _split_at_sign(addr_spec: str, value: str) -> tuple[str, str]:
    local_part, at_sign, domain = addr_spec.rpartition("@")
    if not at_sign:
        raise AddressError(
            AddressErrorCode.INVALID_ADDRESS,
            f"{quote_value(value)} has no '@'; expected an address such as "
            "'name@example.com'",
        )
    if not local_part:
        raise AddressError(
            AddressErrorCode.INVALID_ADDRESS,
            f"{quote_value(value)} has nothing before '@'",
        )
    return local_part, domain


def _format_local_part(content: str, value: str) -> str:
    """Return the canonical form of a quoted local part's content.

    RFC 5321 treats ``"ada"@example.com`` and ``ada@example.com`` as the same
    mailbox, so quotes are kept only where the content needs them.
    """
    if not content:
        raise AddressError(
            AddressErrorCode.INVALID_ADDRESS,
            f"{quote_value(value)} has an empty local part",
        )
    if "\t" in content:
        raise AddressError(
            AddressErrorCode.INVALID_ADDRESS,
            f"{quote_value(value)} has a tab in its local part",
        )
    if _DOT_ATOM.fullmatch(content):
        return content
    escaped = "".join(
        "\\" + character if character in _QUOTED_SPECIALS else character
        for character in content
    )
    return f'"{escaped}"'


def _check_dot_atom(local_part: str, value: str) -> None:
    if _DOT_ATOM.fullmatch(local_part) and not _has_unicode_space(local_part):
        return

    hint = "quote the local part if the mailbox really has this name"
    invalid = [
        character
        for character in local_part
        if character != "."
        and (character.isspace() or not _ATEXT_CHARACTER.fullmatch(character))
    ]
    if "@" in invalid:
        problem = "contains a second '@'"
    elif invalid and invalid[0].isspace():
        problem = "contains whitespace"
        hint = "write a display name as 'Name <address>'"
    elif invalid:
        problem = f"contains {invalid[0]!r}"
    elif local_part.startswith(".") or local_part.endswith("."):
        problem = "starts or ends with a dot"
    else:
        problem = "has two dots in a row"
    raise AddressError(
        AddressErrorCode.INVALID_ADDRESS,
        f"the local part of {quote_value(value)} {problem}; {hint}",
    )


def _has_unicode_space(text: str) -> bool:
    return not text.isascii() and any(character.isspace() for character in text)


def _normalize_domain(domain: str, value: str, allow_single_label: bool) -> str:
    """Return the domain as lowercase ASCII, converting an IDN to A-labels."""
    if not domain:
        raise AddressError(
            AddressErrorCode.MISSING_DOMAIN, f"{quote_value(value)} has no domain"
        )
    if domain.startswith("["):
        raise AddressError(
            AddressErrorCode.INVALID_DOMAIN,
            f"{quote_value(value)} uses a domain literal; use a domain name "
            "instead of an IP address",
        )

    if domain.isascii() and "xn--" not in domain.lower():
        ascii_domain = domain.lower()
    else:
        ascii_domain = _encode_idn(domain, value)

    _check_ascii_labels(ascii_domain, domain, value)
    _check_domain_shape(ascii_domain, value, allow_single_label)
    return ascii_domain


def _encode_idn(domain: str, value: str) -> str:
    if any(character.isspace() for character in domain):
        raise AddressError(
            AddressErrorCode.INVALID_DOMAIN,
            f"{_domain_subject(domain, value)} contains whitespace",
        )
    try:
        encoded = idna.encode(domain, uts46=True)
    except UnicodeError as error:  # idna.IDNAError and its subclasses
        raise AddressError(
            AddressErrorCode.INVALID_DOMAIN,
            f"{_domain_subject(domain, value)} is not "
            f"a valid internationalized domain name: {error}",
        ) from error
    return encoded.decode("ascii").lower()


def _check_ascii_labels(ascii_domain: str, domain: str, value: str) -> None:
    """Check the LDH rule: letters, digits and inner hyphens, 1-63 octets."""
    for label in ascii_domain.split("."):
        if not label:
            problem = "has an empty label (a leading, trailing or double dot)"
        elif len(label) > MAX_LABEL_OCTETS:
            problem = (
                f"has a label of {len(label)} characters; "
                f"the maximum is {MAX_LABEL_OCTETS}"
            )
        elif _LABEL.fullmatch(label):
            continue
        elif label.startswith("-") or label.endswith("-"):
            problem = f"has the label {label!r}, which starts or ends with a hyphen"
        else:
            problem = (
                f"has the label {label!r}; labels may contain only letters, "
                "digits and hyphens"
            )
        raise AddressError(
            AddressErrorCode.INVALID_DOMAIN,
            f"{_domain_subject(domain, value)} {problem}",
        )


def _check_domain_shape(domain: str, value: str, allow_single_label: bool) -> None:
    labels = domain.split(".")
    if len(domain) > MAX_DOMAIN_OCTETS:
        raise AddressError(
            AddressErrorCode.INVALID_DOMAIN,
            f"{_domain_subject(domain, value)} is {len(domain)} bytes long; "
            f"the maximum is {MAX_DOMAIN_OCTETS}",
        )
    if len(labels) == 1 and not allow_single_label:
        raise AddressError(
            AddressErrorCode.INVALID_DOMAIN,
            f"{_domain_subject(domain, value)} has no "
            "dot; use a fully qualified domain such as 'example.com'",
        )
    if labels[-1].isdigit():
        raise AddressError(
            AddressErrorCode.INVALID_DOMAIN,
            f"{_domain_subject(domain, value)} looks "
            "like an IP address; use a domain name",
        )
