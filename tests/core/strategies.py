"""Hypothesis strategies for core values and request bodies."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from sendarix_core.addresses import MAX_ADDRESS_OCTETS, MAX_LOCAL_PART_OCTETS
from sendarix_core.model import Address
from sendarix_core.validation import FIELDS

_ATEXT = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"
)
_NON_ASCII_LETTERS = "éüßøçñжя中文"
_LDH = "abcdefghijklmnopqrstuvwxyz0123456789-"

# Text that may appear in a header: no control characters, line separators
# or lone surrogates.
header_text = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")),
    max_size=40,
)


@st.composite
def dot_atom_local_parts(draw: st.DrawFn) -> str:
    alphabet = _ATEXT + _NON_ASCII_LETTERS
    atoms = draw(
        st.lists(st.text(alphabet, min_size=1, max_size=10), min_size=1, max_size=3)
    )
    return ".".join(atoms)


@st.composite
def quoted_local_parts(draw: st.DrawFn) -> str:
    """Return a quoted local part that needs its quotes, in canonical form."""
    alphabet = _ATEXT + " .(),:;<>@[]" + '"\\'
    words = draw(
        st.lists(st.text(alphabet, min_size=1, max_size=8), min_size=2, max_size=3)
    )
    content = " ".join(words)
    escaped = content.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


@st.composite
def domains(draw: st.DrawFn) -> str:
    """Return a lowercase ASCII domain with two to four labels."""
    label = st.text(_LDH, min_size=1, max_size=20).filter(
        lambda text: not text.startswith("-") and not text.endswith("-")
    )
    top_level = st.text("abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=6)
    labels = draw(st.lists(label, min_size=1, max_size=3))
    return ".".join([*labels, draw(top_level)])


@st.composite
def display_names(draw: st.DrawFn) -> str:
    """Return a display name that needs no quoting: words and single spaces."""
    alphabet = (
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.'" + _NON_ASCII_LETTERS
    )
    words = draw(st.lists(st.text(alphabet, min_size=1, max_size=10), max_size=3))
    return " ".join(words)


@st.composite
def addresses(draw: st.DrawFn) -> Address:
    """Return a valid address in the canonical form ``parse_address`` returns."""
    local_part = draw(st.one_of(dot_atom_local_parts(), quoted_local_parts()))
    domain = draw(domains())
    address = Address(local_part, domain, draw(display_names()))
    local_octets = len(local_part.encode())
    total_octets = local_octets + 1 + len(domain)
    if local_octets > MAX_LOCAL_PART_OCTETS or total_octets > MAX_ADDRESS_OCTETS:
        return Address("ada", domain, address.display_name)
    return address


def address_values() -> st.SearchStrategy[str | dict[str, str]]:
    """Return an address as a request gives it: a string or the object form."""
    return addresses().flatmap(
        lambda address: st.sampled_from(
            [
                str(address),
                address.email,
                {"name": address.display_name, "email": address.email},
            ]
        )
    )


# JSON values as ``json.loads`` returns them.
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


# Template data as a valid request carries it: stored text may not contain
# NUL, which PostgreSQL can't hold.
_STORED_TEXT_CHARACTERS = st.characters(exclude_characters="\0")
stored_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(_STORED_TEXT_CHARACTERS),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(_STORED_TEXT_CHARACTERS, max_size=10), children, max_size=4
        )
    ),
    max_leaves=20,
)


# Surrogates can't be encoded as UTF-8, and email text may not contain NUL.
_BODY_CHARACTERS = st.characters(exclude_categories=("Cs",), exclude_characters="\0")


@st.composite
def send_bodies(draw: st.DrawFn, now: datetime) -> dict[str, Any]:
    """Return a valid ``POST /v1/messages`` body for a request made at ``now``."""
    body: dict[str, Any] = {
        "recipient": draw(address_values()),
        "from": draw(address_values()),
    }
    if draw(st.booleans()):
        body["template"] = draw(st.text("abcdefghij-", min_size=1, max_size=10))
        body["template_data"] = draw(
            st.dictionaries(
                st.text(_STORED_TEXT_CHARACTERS, max_size=10),
                stored_json_values,
                max_size=3,
            )
        )
    else:
        body["subject"] = draw(header_text.filter(lambda text: text.strip() != ""))
        body["text"] = draw(st.text(_BODY_CHARACTERS, min_size=1, max_size=100))

    optional = {
        "priority": st.sampled_from(["high", "normal", "low"]),
        "headers": st.dictionaries(
            st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=10).map(
                lambda name: f"X-{name}"
            ),
            header_text,
            max_size=3,
        ),
        "scheduled_time": st.timedeltas(timedelta(days=-1), timedelta(days=29)).map(
            lambda offset: (now + offset).isoformat()
        ),
        "metadata": st.dictionaries(
            st.text("abcdefghij_", min_size=1, max_size=10), header_text, max_size=3
        ),
        "tags": st.lists(
            st.text(
                "abcdefghijklmnopqrstuvwxyz0123456789_.:-", min_size=1, max_size=20
            ),
            max_size=3,
            unique=True,
        ),
    }
    for field, strategy in optional.items():
        if draw(st.booleans()):
            body[field] = draw(strategy)
    return body


@st.composite
def arbitrary_bodies(draw: st.DrawFn, now: datetime) -> dict[str, Any]:
    """Return a body with known and unknown fields set to any JSON value."""
    body = draw(send_bodies(now))
    for field in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=4)):
        body[field] = draw(json_values)
    body.update(draw(st.dictionaries(st.text(max_size=10), json_values, max_size=2)))
    return body
