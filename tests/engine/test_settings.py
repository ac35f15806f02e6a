"""Settings from the environment: conversion and the errors operators see."""

from __future__ import annotations

from pathlib import Path

import pytest

from sendarix_backends.settings import (
    DeliveryMode,
    EventLoop,
    SenderVerification,
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
