"""Schemathesis against a live ``sendarix serve``: the server and its document agree.

Schemathesis reads the served ``/v1/openapi.json`` and sends generated
requests, valid and invalid, to every operation. The checks: no ``5xx``;
every status, content type, header and body as documented; schema-invalid
input rejected; a request without the key rejected; an undocumented method
responded to with ``405``. Five examples per operation and a fixed seed keep the run
reproducible and at about 30 s on two cores (schemathesis 4.32).

``positive_data_acceptance`` is left out: the schemas are deliberately
looser than validation, which also checks address syntax, reserved header
names and time ranges that a schema can't express.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server_process import ServerProcess

pytestmark = pytest.mark.e2e

CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "ignored_auth",
        "unsupported_method",
    )
)


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path, {"SENDARIX_DELIVERY_MODE": "sink"})
    yield server
    server.stop()


def test_api_matches_document(live_server: ServerProcess, tmp_path: Path) -> None:
    # A high limit, because the run sends a few thousand requests a minute.
    key = live_server.create_key("--rate-limit", "100000")
    live_server.start()

    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{live_server.url}/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {key}",
            "--checks",
            CHECKS,
            "--max-examples",
            "5",
            "--seed",
            "1",
            "--generation-database",
            "none",
            "--request-timeout",
            "30",
            "--no-color",
        ],
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )

    assert run.returncode == 0, f"{run.stdout[-20000:]}\n{live_server.log()[-5000:]}"
