"""Log calls must not pass reserved LogRecord attributes in ``extra``.

The logging module raises KeyError at the moment such a record is made, so a
bad key turns the failure being logged into a crash of the caller. The error
only shows on the path that logs, which is often a rare error branch.
"""

import ast
import logging
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sendarix_core", "sendarix_backends", "sendarix_http")
RESERVED = set(vars(logging.LogRecord("n", 0, "p", 0, "m", None, None))) | {
    "message",
    "asctime",
}


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _reserved_extras(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            if keyword.arg != "extra" or not isinstance(keyword.value, ast.Dict):
                continue
            for key in keyword.value.keys:
                if isinstance(key, ast.Constant) and key.value in RESERVED:
                    found.append(f"{path.relative_to(ROOT)}:{key.lineno} {key.value!r}")
    return found


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_extra_keys_are_not_reserved(path: Path) -> None:
    assert _reserved_extras(path) == []
