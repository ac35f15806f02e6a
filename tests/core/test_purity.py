"""The core must stay free of I/O libraries."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = (
    "sqlalchemy",
    "aiosmtplib",
    "aiosmtpd",
    "dns",
    "httpx",
    "starlette",
    "uvicorn",
    "anyio",
    "psycopg",
    "socket",
    "asyncio",
)

SCRIPT = """
import pkgutil, importlib, sys
import sendarix_core
for module in pkgutil.walk_packages(sendarix_core.__path__, "sendarix_core."):
    importlib.import_module(module.name)
print("\\n".join(sorted(sys.modules)))
"""


def test_core_imports_no_io_library() -> None:
    output = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True
    ).stdout
    loaded = {name.split(".")[0] for name in output.split()}
    for name in FORBIDDEN:
        assert name not in loaded, f"importing sendarix_core loaded {name}"
