"""Settings from the environment: conversion and the errors operators see."""

from __future__ import annotations

from pathlib import Path

import pytest

from sendarix_backends.settings import (
    DeliveryMode,
    EventLoop,
    SenderVerification,
    Settings,
    load_settings,
)
from sendarix_core.errors import ConfigurationError


def test_values_converted() -> None:
    settings = load_settings(
        environ={
            "SENDARIX_HTTP_PORT": "8081",
            "SENDARIX_DELIVERY_MODE": "sink",
            "SENDARIX_SENDER_VERIFICATION": "off",
            "SENDARIX_DATA_FENCE": "yes",
            "SENDARIX_DNS_NAMESERVERS": "127.0.0.1:5353, [::1]",
            "SENDARIX_EVENT_LOOP": "asyncio",
        }
    )

    assert settings.http_port == 8081
    assert settings.delivery_mode is DeliveryMode.SINK
    assert settings.sender_verification is SenderVerification.OFF
    assert settings.data_fence is True
    assert settings.dns_nameservers == (("127.0.0.1", 5353), ("::1", 53))
    assert settings.event_loop is EventLoop.ASYNCIO


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SENDARIX_HTTP_PORT", "http", "SENDARIX_HTTP_PORT: invalid port 'http'"),
        (
            "SENDARIX_SENDER_VERIFICATION",
            "maybe",
            "SENDARIX_SENDER_VERIFICATION: invalid sender verification 'maybe'; "
            "expected one of required, off",
        ),
        (
            "SENDARIX_DELIVERY_MODE",
            "pigeon",
            "SENDARIX_DELIVERY_MODE: invalid delivery mode 'pigeon'",
        ),
        ("SENDARIX_LEASE_SECONDS", "0", "SENDARIX_LEASE_SECONDS: invalid number '0'"),
        ("SENDARIX_DATA_FENCE", "maybe", "SENDARIX_DATA_FENCE: invalid boolean"),
        (
            "SENDARIX_EVENT_LOOP",
            "tokio",
            "SENDARIX_EVENT_LOOP: invalid event loop 'tokio'; "
            "expected one of auto, uvloop, asyncio",
        ),
        ("SENDARIX_POLL_INTERVAL", "nan", "SENDARIX_POLL_INTERVAL: invalid number"),
        ("SENDARIX_SMTP_TIMEOUT", "inf", "SENDARIX_SMTP_TIMEOUT: invalid number"),
        ("SENDARIX_LEASE_SECONDS", "1e-9", "SENDARIX_LEASE_SECONDS: invalid number"),
        (
            "SENDARIX_DNS_NAMESERVERS",
            "dns.invalid",
            "SENDARIX_DNS_NAMESERVERS: invalid name server 'dns.invalid'",
        ),
        (
            "SENDARIX_DNS_NAMESERVERS",
            "127.0.0.1:53:53",
            "SENDARIX_DNS_NAMESERVERS: invalid name server",
        ),
        ("SENDARIX_DNS_NAMESERVERS", "[::1", "SENDARIX_DNS_NAMESERVERS: invalid"),
        (
            "SENDARIX_DESTINATION_PORT",
            "0",
            "SENDARIX_DESTINATION_PORT: invalid port '0'",
        ),
        (
            "SENDARIX_DEFAULT_SENDER",
            "notanaddress",
            "SENDARIX_DEFAULT_SENDER: invalid default sender",
        ),
        (
            "SENDARIX_PUBLIC_URL",
            "notaurl",
            "SENDARIX_PUBLIC_URL: invalid public URL 'notaurl'",
        ),
        (
            "SENDARIX_PUBLIC_URL",
            "https://mail.example.com?x=1",
            "SENDARIX_PUBLIC_URL: invalid public URL",
        ),
        (
            "SENDARIX_PUBLIC_URL",
            "https://mail.example.com:99999",
            "SENDARIX_PUBLIC_URL: invalid public URL",
        ),
        (
            "SENDARIX_PUBLIC_URL",
            "https://bücher.example/mail",
            "SENDARIX_PUBLIC_URL: invalid public URL 'https://bücher.example/mail': "
            "it contains non-ASCII characters",
        ),
        (
            "SENDARIX_SMARTHOST",
            "smtp://u:secret@[::1:25",
            "SENDARIX_SMARTHOST: invalid smarthost URL",
        ),
        ("SENDARIX_LEASE_SECONDS", "1e308", "SENDARIX_LEASE_SECONDS: invalid number"),
        (
            "SENDARIX_EVENT_RETENTION_DAYS",
            "3000000",
            "SENDARIX_EVENT_RETENTION_DAYS: invalid number",
        ),
        ("SENDARIX_HELO_NAME", "bad name", "SENDARIX_HELO_NAME: invalid EHLO name"),
        (
            "SENDARIX_RETURN_PATH_DOMAIN",
            "127.0.0.1",
            "SENDARIX_RETURN_PATH_DOMAIN: invalid domain",
        ),
        (
            "SENDARIX_SMARTHOST",
            "smtp://relay.test:0",
            "SENDARIX_SMARTHOST: invalid smarthost URL: the URL has an invalid port",
        ),
    ],
)
def test_invalid_value_names_setting(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(environ={name: value})

    assert str(raised.value).startswith(message)


def test_invalid_file_value_names_key_and_file(tmp_path: Path) -> None:
    config = tmp_path / "sendarix.toml"
    config.write_text('event_loop = "tokio"\n')

    with pytest.raises(ConfigurationError) as raised:
        load_settings(config_file=config, environ={})

    assert str(raised.value).startswith(
        f"event_loop in {str(config)!r}: invalid event loop 'tokio'"
    )


def test_invalid_flag_value_names_flag() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(environ={}, overrides={"http_port": "http"})

    assert str(raised.value).startswith("--http-port: invalid port 'http'")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("dns_nameservers = 53", "dns_nameservers in"),
        ("dns_nameservers = [5353]", "dns_nameservers in"),
        ("http_host = 8080", "http_host in"),
        ("database_url = 5", "database_url in"),
        ("smarthost = 5", "smarthost in"),
        ("http_port = true", "http_port in"),
        ("http_port = 8080.9", "http_port in"),
        ("worker_concurrency = 1.9", "worker_concurrency in"),
        ("lease_seconds = true", "lease_seconds in"),
        ("data_fence = 1", "data_fence in"),
        ("serve_workers = 1.5", "serve_workers in"),
        ("relay_allow_plaintext_loopback = []", "relay_allow_plaintext_loopback in"),
    ],
)
def test_wrong_types_in_file_refused(tmp_path: Path, line: str, message: str) -> None:
    config = tmp_path / "sendarix.toml"
    config.write_text(line + "\n")

    with pytest.raises(ConfigurationError) as raised:
        load_settings(config_file=config, environ={})

    assert str(raised.value).startswith(message)


def test_file_not_utf8_refused(tmp_path: Path) -> None:
    config = tmp_path / "sendarix.toml"
    config.write_bytes(b"\xff\xfe")

    with pytest.raises(
        ConfigurationError, match="not UTF-8 \\(byte 0xff at offset 0\\)"
    ):
        load_settings(config_file=config, environ={})


def test_smarthost_error_hides_password() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(environ={"SENDARIX_SMARTHOST": "smtp://u:secret@[::1:25"})

    assert "secret" not in str(raised.value)


def test_whole_float_port_in_file_accepted(tmp_path: Path) -> None:
    config = tmp_path / "sendarix.toml"
    config.write_text("http_port = 8081.0\nsmarthost = 'smtp://relay.test'\n")

    settings = load_settings(config_file=config, environ={})

    assert settings.http_port == 8081
    assert settings.smarthost == "smtp://relay.test"


def test_misspelt_variable_suggests_name() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(environ={"SENDARIX_DELIVERY_MOD": "sink"})

    message = str(raised.value)
    assert message.startswith("unknown environment variable SENDARIX_DELIVERY_MOD;")
    assert "did you mean SENDARIX_DELIVERY_MODE?" in message
    assert "Rename or unset it" in message


def test_unknown_variable_lists_settings() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(environ={"SENDARIX_QQQQ": "1", "SENDARIX_HTTP_PORT": "8081"})

    message = str(raised.value)
    assert "SENDARIX_QQQQ" in message
    assert "did you mean" not in message
    assert "Known settings: SENDARIX_CLAIM_BATCH," in message


def test_unknown_variables_counted() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(environ={"SENDARIX_QQQQ": "1", "SENDARIX_ZZZZ": "1"})

    assert "SENDARIX_QQQQ (and 1 more)" in str(raised.value)


def test_test_suite_variable_accepted() -> None:
    environ = {"SENDARIX_TEST_POSTGRESQL_URL": "postgresql://postgres@127.0.0.1/x"}

    settings = load_settings(environ=environ)

    assert settings.delivery_mode is DeliveryMode.MX


def test_kubernetes_service_links_accepted() -> None:
    # What a Service named sendarix, and one named sendarix-smtp, put in
    # every pod of the namespace.
    environ = {
        "SENDARIX_SERVICE_HOST": "10.0.0.7",
        "SENDARIX_SERVICE_PORT": "8080",
        "SENDARIX_SERVICE_PORT_HTTP": "8080",
        "SENDARIX_PORT": "tcp://10.0.0.7:8080",
        "SENDARIX_PORT_8080_TCP": "tcp://10.0.0.7:8080",
        "SENDARIX_PORT_8080_TCP_PROTO": "tcp",
        "SENDARIX_PORT_8080_TCP_PORT": "8080",
        "SENDARIX_PORT_8080_TCP_ADDR": "10.0.0.7",
        "SENDARIX_SMTP_SERVICE_HOST": "10.0.0.8",
        "SENDARIX_SMTP_PORT_2525_TCP": "tcp://10.0.0.8:2525",
    }

    settings = load_settings(environ=environ)

    assert settings.http_port == 8080


def test_other_prefixes_ignored() -> None:
    settings = load_settings(environ={"SENDARIXX_MODE": "1", "PATH": "/bin"})

    assert settings.delivery_mode is DeliveryMode.MX


def test_retention_message_states_real_range() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(environ={"SENDARIX_EVENT_RETENTION_DAYS": "0"})

    assert str(raised.value) == (
        "SENDARIX_EVENT_RETENTION_DAYS: invalid number '0'; expected a whole "
        "number of days from 1 to 36,500"
    )


def test_boolean_message_lists_accepted_words() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(environ={"SENDARIX_DATA_FENCE": "maybe"})

    assert str(raised.value) == (
        "SENDARIX_DATA_FENCE: invalid boolean 'maybe'; expected true, false, "
        "yes, no, on, off, 1 or 0"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("Yes", True), ("on", True), ("0", False), ("no", False)],
)
def test_boolean_words_accepted(value: str, expected: bool) -> None:
    settings = load_settings(environ={"SENDARIX_DATA_FENCE": value})

    assert settings.data_fence is expected


def test_python_value_names_attribute() -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings(worker_concurrency=0)

    assert str(raised.value) == (
        "worker_concurrency: invalid number 0; expected a whole number from 1 "
        "to 2,147,483,647"
    )


def test_environment_value_names_variable_once() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(environ={"SENDARIX_WORKER_CONCURRENCY": "0"})

    assert str(raised.value).startswith(
        "SENDARIX_WORKER_CONCURRENCY: invalid number '0';"
    )


def test_python_smarthost_mode_names_attributes() -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings(delivery_mode="smarthost")  # type: ignore[arg-type]

    message = str(raised.value)
    assert message.startswith("delivery_mode is smarthost but smarthost is not set")
    assert "SENDARIX_" not in message


def test_python_half_tls_pair_names_attributes() -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings(relay_tls_cert="/etc/relay.pem")

    message = str(raised.value)
    assert message.startswith("set both relay_tls_cert and relay_tls_key")
    assert "SENDARIX_" not in message


def test_environment_smarthost_mode_names_variables() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(environ={"SENDARIX_DELIVERY_MODE": "smarthost"})

    assert str(raised.value).startswith(
        "SENDARIX_DELIVERY_MODE is smarthost but SENDARIX_SMARTHOST is not set"
    )


def test_file_smarthost_mode_names_key(tmp_path: Path) -> None:
    config = tmp_path / "sendarix.toml"
    config.write_text('delivery_mode = "smarthost"\n')

    with pytest.raises(ConfigurationError) as raised:
        load_settings(config_file=config, environ={})

    assert str(raised.value).startswith(
        f"delivery_mode in {str(config)!r} is smarthost but SENDARIX_SMARTHOST"
    )


def test_flag_smarthost_mode_names_flag() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(environ={}, overrides={"delivery_mode": "smarthost"})

    assert str(raised.value).startswith("--delivery-mode is smarthost but")


def test_empty_database_url_names_fix() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(environ={"SENDARIX_DATABASE_URL": ""})

    assert "SENDARIX_DATABASE_URL" in str(raised.value)
    assert "leave the setting out" in str(raised.value)
