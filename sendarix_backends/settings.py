"""Settings, read from defaults, a TOML file, the environment and flags.

Later sources win: a flag overrides an environment variable, which overrides
the TOML file, which overrides the default. The environment variable names
are part of the public contract; the TOML keys are the same names in lower
case without the ``SENDARIX_`` prefix (``database_url = "sqlite:///x.db"``).
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import math
import os
import re
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar, cast

import attrs

from sendarix_core.addresses import AddressError, parse_address
from sendarix_core.errors import ConfigurationError
from sendarix_core.routing import SmarthostUrl

__all__ = [
    "DeliveryMode",
    "EventLoop",
    "SenderVerification",
    "Settings",
    "load_settings",
]

logger = logging.getLogger("sendarix.settings")


class DeliveryMode(StrEnum):
    MX = "mx"
    SMARTHOST = "smarthost"
    SINK = "sink"


class EventLoop(StrEnum):
    AUTO = "auto"
    """uvloop where it is installed, asyncio's own loop elsewhere."""
    UVLOOP = "uvloop"
    ASYNCIO = "asyncio"


class SenderVerification(StrEnum):
    REQUIRED = "required"
    OFF = "off"


def _nameservers(
    value: str | list[str] | tuple[tuple[str, int], ...],
) -> tuple[tuple[str, int], ...]:
    if isinstance(value, tuple):
        return value
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list):
        items = value
    else:
        raise ConfigurationError(
            f"invalid name servers {value!r}; expected a comma-separated list "
            "of IP addresses, each with an optional :port"
        )
    servers = []
    for raw in items:
        if not isinstance(raw, str):
            raise ConfigurationError(
                f"invalid name server {raw!r}; expected an IP address such as "
                "'127.0.0.1' or '127.0.0.1:5353'"
            )
        item = raw.strip()
        if not item:
            continue
        host, port = _split_host_port(item, default_port=53)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigurationError(
                f"invalid name server {item!r}; expected an IP address with an "
                "optional port, such as 127.0.0.1:5353 or [::1]:53 (the "
                "resolver does not look names up)"
            ) from None
        servers.append((host, port))
    return tuple(servers)


def _split_host_port(item: str, *, default_port: int) -> tuple[str, int]:
    if item.startswith("["):
        host, bracket, rest = item[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ConfigurationError(
                f"invalid address {item!r}; expected [IPv6 address]:port"
            )
        port_text = rest.removeprefix(":")
    elif item.count(":") == 1:
        host, port_text = item.split(":")
    else:
        host, port_text = item, ""
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigurationError(f"invalid port in {item!r}; expected host[:port]")
    return host, int(port_text)


_Choice = TypeVar("_Choice", bound=StrEnum)


def _to_choice(enum: type[_Choice], value: str | _Choice, label: str) -> _Choice:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise ConfigurationError(
            f"invalid {label} {value!r}; expected one of {allowed}"
        ) from None


def _delivery_mode(value: str | DeliveryMode) -> DeliveryMode:
    return _to_choice(DeliveryMode, value, "delivery mode")


def _event_loop(value: str | EventLoop) -> EventLoop:
    return _to_choice(EventLoop, value, "event loop")


def _sender_verification(
    value: str | SenderVerification | None,
) -> SenderVerification | None:
    if value is None:
        return None
    return _to_choice(SenderVerification, value, "sender verification")


def _boolean(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        # Such as data_fence = 1 in a TOML file, which has true and false.
        raise ConfigurationError(f"invalid boolean {value!r}; expected true or false")
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(
        f"invalid boolean {value!r}; expected true, false, yes, no, on, off, 1 or 0"
    )


def _port(value: str | int) -> int:
    try:
        port = _whole_number(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"invalid port {value!r}; expected 0-65535") from None
    if not 0 <= port < 65536:
        raise ConfigurationError(f"invalid port {value!r}; expected 0-65535")
    return port


def _whole_number(value: object) -> int:
    """Return ``value`` as an int; raise ValueError for a bool or a fraction.

    TOML gives numbers their own types, so ``port = true`` or ``8080.9``
    would otherwise pass as 1 or 8080.
    """
    if isinstance(value, bool):
        raise TypeError(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(value)
        return int(value)
    if isinstance(value, int | str):
        return int(value)
    raise TypeError(value)


def _destination_port(value: str | int) -> int:
    port = _port(value)
    if port == 0:
        raise ConfigurationError(
            f"invalid port {value!r}; use a number from 1 to 65535"
        )
    return port


def _positive_int(value: str | int) -> int:
    return _whole_number_in_range(value, _MAX_COUNT)


def _whole_number_in_range(value: str | int, maximum: int, unit: str = "") -> int:
    expected = f"expected a whole number{unit} from 1 to {maximum:,}"
    try:
        number = _whole_number(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigurationError(f"invalid number {value!r}; {expected}") from None
    if not 1 <= number <= maximum:
        raise ConfigurationError(f"invalid number {value!r}; {expected}")
    return number


# Counts end up in SQL INTEGER columns and C ints.
_MAX_COUNT = 2**31 - 1


# The shortest and longest times a setting in seconds may have. Shorter
# ones round to zero where they become a timedelta, or make a loop spin;
# longer ones overflow the dates they are added to.
_MIN_SECONDS = 0.001
_MAX_SECONDS = 365 * 24 * 3600


def _positive_float(value: str | float) -> float:
    expected = (
        f"expected a number of seconds from {_MIN_SECONDS} to {_MAX_SECONDS:,} (a year)"
    )
    if isinstance(value, bool):
        # TOML's true would otherwise pass as one second.
        raise ConfigurationError(f"invalid number {value!r}; {expected}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"invalid number {value!r}; {expected}") from None
    if not math.isfinite(number) or not (_MIN_SECONDS <= number <= _MAX_SECONDS):
        raise ConfigurationError(f"invalid number {value!r}; {expected}")
    return number


def _retention_days(value: str | int) -> int:
    return _whole_number_in_range(value, _MAX_RETENTION_DAYS, " of days")


# A century: a longer cut-off would go before the first representable date.
_MAX_RETENTION_DAYS = 36_500


def _optional_str(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"invalid value {value!r}; expected a string")
    return value.strip() or None


def _text(value: str) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"invalid value {value!r}; expected a string")
    if not value.strip():
        raise ConfigurationError(
            f"invalid value {value!r}; expected a value, or leave the setting "
            "out for its default"
        )
    return value.strip()


def _smarthost(value: str | None) -> str | None:
    url = _optional_str(value)
    if url is None:
        return None
    try:
        SmarthostUrl.parse(url)
    except ValueError as exc:
        # The message never repeats the URL, whose password it may hold.
        raise ConfigurationError(f"invalid smarthost URL: {exc}") from None
    return url


def _sender(value: str | None) -> str | None:
    text = _optional_str(value)
    if text is None:
        return None
    try:
        parse_address(text)
    except AddressError as exc:
        raise ConfigurationError(
            f"invalid default sender: {exc}; use 'Name <address@domain>' or an address"
        ) from None
    return text


_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _is_host_name(text: str) -> bool:
    """Return whether ``text`` is a DNS name; one label, such as "localhost"
    on a test system, counts."""
    return len(text) <= 253 and all(
        _LABEL.fullmatch(label) for label in text.split(".")
    )


def _domain(value: str | None) -> str | None:
    text = _optional_str(value)
    if text is None:
        return None
    name = text.rstrip(".")
    # At least two labels, and no top-level domain is all digits.
    if not _is_host_name(name) or "." not in name or name.rsplit(".", 1)[1].isdigit():
        raise ConfigurationError(
            f"invalid domain {text!r}; expected a name such as bounces.acme.example "
            "(ASCII, with A-labels for an international name)"
        )
    return text.rstrip(".")


def _helo_name(value: str | None) -> str | None:
    text = _optional_str(value)
    if text is None:
        return None
    if text.startswith("[") and text.endswith("]"):
        # An address literal (RFC 5321 section 4.1.3), for a host without a name.
        literal = text[1:-1].removeprefix("IPv6:")
        try:
            ipaddress.ip_address(literal)
        except ValueError:
            pass
        else:
            return text
    elif _is_host_name(text.rstrip(".")):
        return text.rstrip(".")
    raise ConfigurationError(
        f"invalid EHLO name {text!r}; expected this host's name, such as "
        "mail.acme.example, or an address literal such as [192.0.2.1]"
    )


def _public_url(value: str | None) -> str | None:
    text = _optional_str(value)
    if text is None:
        return None
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:
        parts = None
    valid = (
        parts is not None
        and parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not parts.query
        and not parts.fragment
        and not any(character.isspace() for character in text)
        and _has_valid_port(parts)
    )
    if not valid or parts is None:
        raise ConfigurationError(
            f"invalid public URL {text!r}; expected the base URL recipients "
            "reach the API at, such as https://mail.example.com, without a "
            "query or fragment; unsubscribe links add /u/… to it"
        )
    if not text.isascii():
        # The URL goes into List-Unsubscribe, a structured field where RFC
        # 2047 allows no encoded words, so the builder sends it as ASCII.
        raise ConfigurationError(
            f"invalid public URL {text!r}: it contains non-ASCII characters, "
            "which the List-Unsubscribe header can't carry; write the host in "
            "its A-label form (xn--…) and percent-encode the path"
        )
    if "@" in parts.netloc:
        # Every unsubscribe link would carry the user name and password, so
        # the message shows neither.
        host = parts.netloc.rpartition("@")[2]
        raise ConfigurationError(
            f"invalid public URL '{parts.scheme}://…@{host}': it contains a user "
            "name or password, which every unsubscribe link would reveal; "
            "remove the part up to '@'"
        )
    return text


def _has_valid_port(parts: urllib.parse.SplitResult) -> bool:
    try:
        return parts.port != 0
    except ValueError:
        return False


def _name_conversion_errors(
    cls: type, fields: list[attrs.Attribute[Any]]
) -> list[attrs.Attribute[Any]]:
    """Make each converter's errors start with the attribute's name.

    ``Settings(worker_concurrency=0)`` then names the setting it is about.
    The converter as written stays in the metadata under ``"convert"``, for
    ``load_settings``, which names the variable, key or flag instead.
    """
    named = []
    for field in fields:
        convert = cast(Callable[[Any], Any], field.converter)
        named.append(
            field.evolve(
                converter=_named_converter(field.name, convert),
                metadata={**field.metadata, "convert": convert},
            )
        )
    return named


def _named_converter(name: str, convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def converter(value: Any) -> Any:
        try:
            return convert(value)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{name}: {exc}") from exc

    return converter


@attrs.frozen(kw_only=True, field_transformer=_name_conversion_errors)
class Settings:
    """Every setting of a Sendarix process, with its default."""

    database_url: str = attrs.field(default="sqlite:///sendarix.db", converter=_text)
    http_host: str = attrs.field(default="127.0.0.1", converter=_text)
    http_port: int = attrs.field(default=8080, converter=_port)
    relay_host: str = attrs.field(default="127.0.0.1", converter=_text)
    relay_port: int = attrs.field(default=2525, converter=_port)
    delivery_mode: DeliveryMode = attrs.field(
        default=DeliveryMode.MX, converter=_delivery_mode
    )
    smarthost: str | None = attrs.field(default=None, converter=_smarthost)
    dns_nameservers: tuple[tuple[str, int], ...] = attrs.field(
        default=(), converter=_nameservers
    )
    destination_port: int = attrs.field(default=25, converter=_destination_port)
    default_sender: str | None = attrs.field(default=None, converter=_sender)
    webhook_allow_private: bool = attrs.field(default=False, converter=_boolean)
    sender_verification: SenderVerification | None = attrs.field(
        default=None, converter=_sender_verification
    )
    """``None`` (the default) requires a verified sender domain once any
    sending domain was added."""
    public_url: str | None = attrs.field(default=None, converter=_public_url)
    """Base URL of the HTTP API as recipients reach it, for unsubscribe links."""
    helo_name: str | None = attrs.field(default=None, converter=_helo_name)
    """Name sent in EHLO; the machine's fully qualified name when unset."""
    serve_workers: bool = attrs.field(default=True, converter=_boolean)
    """Run delivery and event processing inside ``sendarix serve``. False
    leaves them to ``sendarix worker`` processes, so accepting and delivering
    run in separate processes and can use separate cores."""
    worker_concurrency: int = attrs.field(default=200, converter=_positive_int)
    """Deliveries in flight at once per worker process. Claims and outcome
    commits carry fewer messages each when it is small, and every commit has
    a fixed cost, so a small value makes each message pay for more commits."""
    claim_batch: int = attrs.field(default=100, converter=_positive_int)
    lease_seconds: float = attrs.field(default=60.0, converter=_positive_float)
    """How long a claimed message stays with one worker before another may take
    it over; renewed while the delivery runs."""
    poll_interval: float = attrs.field(default=1.0, converter=_positive_float)
    """Seconds between queue polls when no local submission wakes the worker."""
    data_fence: bool = attrs.field(default=False, converter=_boolean)
    """Send DATA for one message at a time per worker and save its outcome
    before the next, so a worker killed mid-delivery re-sends at most one
    message the destination already accepted. Off by default, because it
    limits a worker to one message per DATA reply time plus one commit."""
    smtp_timeout: float = attrs.field(default=30.0, converter=_positive_float)
    smtp_data_timeout: float = attrs.field(default=600.0, converter=_positive_float)
    """Seconds to wait for the reply to a message's content once it is sent.
    The server may check the message first, and a deferral here sends it
    again at the retry, so the default is RFC 5321's 10 minutes."""
    relay_implicit_tls_port: int = attrs.field(default=0, converter=_port)
    """Port of the SMTP relay that speaks TLS from the first byte (RFC 8314,
    usually 465); 0 turns it off."""
    relay_tls_cert: str | None = attrs.field(default=None, converter=_optional_str)
    relay_tls_key: str | None = attrs.field(default=None, converter=_optional_str)
    relay_allow_plaintext_loopback: bool = attrs.field(
        default=False, converter=_boolean
    )
    """Offer AUTH without TLS to clients connecting from a loopback address."""
    relay_max_message_bytes: int = attrs.field(
        default=52_428_800, converter=_positive_int
    )
    relay_max_recipients: int = attrs.field(default=100, converter=_positive_int)
    relay_max_commands: int = attrs.field(default=1000, converter=_positive_int)
    """Commands one relay session may send before it is closed."""
    relay_idle_timeout: float = attrs.field(default=300.0, converter=_positive_float)
    relay_auth_failure_limit: int = attrs.field(default=10, converter=_positive_int)
    """Failed AUTH attempts per client address per minute."""
    event_retention_days: int = attrs.field(default=30, converter=_retention_days)
    """Days events and finished webhook deliveries are kept."""
    webhook_timeout: float = attrs.field(default=10.0, converter=_positive_float)
    """Seconds one webhook post may take in total, connection included."""
    return_path_domain: str | None = attrs.field(default=None, converter=_domain)
    """Domain of the VERP return path ``bounces+<message_id>@domain``; unset,
    the envelope sender is the from address."""
    inbound_host: str = attrs.field(default="127.0.0.1", converter=_text)
    inbound_port: int = attrs.field(default=0, converter=_port)
    """Port of the SMTP listener for bounce and complaint reports; 0 is off."""
    event_loop: EventLoop = attrs.field(default=EventLoop.AUTO, converter=_event_loop)
    """The asyncio event loop of ``serve`` and ``worker``."""

    def __attrs_post_init__(self) -> None:
        _check_combinations(attrs.asdict(self, recurse=False), str)


def _check_combinations(
    values: Mapping[str, Any], describe: Callable[[str], str]
) -> None:
    """Raise ``ConfigurationError`` for settings that are invalid together.

    ``describe`` turns an attribute name into the name the user wrote: the
    attribute itself, or an environment variable, TOML key or flag.
    """
    if values["delivery_mode"] == DeliveryMode.SMARTHOST and not values["smarthost"]:
        raise ConfigurationError(
            f"{describe('delivery_mode')} is smarthost but "
            f"{describe('smarthost')} is not set; set it to "
            "smtp://user:pass@host:port"
        )
    if (values["relay_tls_cert"] is None) != (values["relay_tls_key"] is None):
        raise ConfigurationError(
            f"set both {describe('relay_tls_cert')} and "
            f"{describe('relay_tls_key')}, or neither for a self-signed "
            "development certificate"
        )


_FIELDS = tuple(field.name for field in attrs.fields(Settings))


def environment_name(field: str) -> str:
    return f"SENDARIX_{field.upper()}"


_ENVIRONMENT_NAMES = frozenset(environment_name(field) for field in _FIELDS)

# Variables with the prefix that are not settings, so start-up accepts them:
# the test suite reads the PostgreSQL URL to test against from this one.
_NON_SETTING_VARIABLES = frozenset({"SENDARIX_TEST_POSTGRESQL_URL"})
# Kubernetes gives every pod SERVICE_HOST, SERVICE_PORT and PORT variables
# for each Service of its namespace, so a Service named sendarix (or
# sendarix-...) brings SENDARIX_SERVICE_HOST, SENDARIX_PORT_8080_TCP_ADDR
# and the like.
_SERVICE_LINK = re.compile(
    r"SENDARIX(_[A-Z0-9_]+?)?_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?"
    r"|PORT(_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)"
)


def _check_environment_names(environ: Mapping[str, str]) -> None:
    """Raise ``ConfigurationError`` for a ``SENDARIX_`` variable that is no setting.

    A misspelt variable would otherwise leave its setting at the default,
    such as delivery to the Internet in place of the sink.
    """
    accepted = _ENVIRONMENT_NAMES | _NON_SETTING_VARIABLES
    unknown = sorted(
        name
        for name in environ
        if name.startswith("SENDARIX_")
        and name not in accepted
        and _SERVICE_LINK.fullmatch(name) is None
    )
    if not unknown:
        return
    name = unknown[0]
    others = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
    # Matched without the shared prefix, which would make every name close.
    close = difflib.get_close_matches(
        name.removeprefix("SENDARIX_").lower(), _FIELDS, n=1
    )
    if close:
        advice = f"did you mean {environment_name(close[0])}? Rename or unset it"
    else:
        known = ", ".join(sorted(_ENVIRONMENT_NAMES))
        advice = f"rename or unset it. Known settings: {known}"
    raise ConfigurationError(f"unknown environment variable {name}{others}; {advice}")


def load_settings(
    *,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge the TOML file, the environment and flag ``overrides``.

    ``overrides`` holds flag values; ``None`` values are ignored, so unset
    flags do not mask the environment. A ``SENDARIX_`` variable that names
    no setting raises ``ConfigurationError``, as an unknown TOML key does.
    """
    values: dict[str, Any] = {}
    # Where each value came from, for the error that names it.
    sources: dict[str, str] = {}
    if config_file is not None:
        for key, value in _read_toml(Path(config_file)).items():
            values[key] = value
            sources[key] = f"{key} in {str(config_file)!r}"
    environ = os.environ if environ is None else environ
    _check_environment_names(environ)
    for field in _FIELDS:
        name = environment_name(field)
        if name in environ:
            values[field] = environ[name]
            sources[field] = name
    for field, value in (overrides or {}).items():
        if value is not None:
            values[field] = value
            sources[field] = "--" + field.replace("_", "-")
    # Converted here one by one, so an error names the setting it is about;
    # the converters take their own output unchanged.
    for attribute in attrs.fields(Settings):
        if attribute.name in values:
            convert = attribute.metadata["convert"]
            try:
                values[attribute.name] = convert(values[attribute.name])
            except (ValueError, TypeError, ConfigurationError) as exc:
                source = sources.get(attribute.name, attribute.name)
                raise ConfigurationError(f"{source}: {exc}") from exc
    merged = {
        attribute.name: values.get(attribute.name, attribute.default)
        for attribute in attrs.fields(Settings)
    }
    _check_combinations(
        merged, lambda field: sources.get(field, environment_name(field))
    )
    try:
        return Settings(**values)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"invalid settings: {exc}") from exc


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the config file {str(path)!r}: {exc}"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(
            f"the config file {str(path)!r} is not valid TOML: {exc}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"the config file {str(path)!r} is not valid TOML: it is not UTF-8 "
            f"(byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
        ) from exc
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        known = ", ".join(_FIELDS)
        raise ConfigurationError(
            f"unknown setting {unknown[0]!r} in {str(path)!r}; known settings: {known}"
        )
    return data
