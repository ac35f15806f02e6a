"""The ``sendarix`` command: settings checks, key commands and their help."""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
from pathlib import Path

import psycopg
import pytest

from sendarix_http.cli import main
from tests.storage.conftest import POSTGRESQL_URL, schema_url
from tests.support.server_process import SENDARIX, free_port


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``sendarix`` command in a subprocess."""
    return subprocess.run(
        [*SENDARIX, *args],
        check=False,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_rejects_misspelt_variable(tmp_path: Path) -> None:
    database = tmp_path / "sendarix.db"
    result = run_cli(
        "serve",
        "--database-url",
        f"sqlite:///{database}",
        "--http-port",
        str(free_port()),
        "--relay-port",
        "0",
        env={"SENDARIX_DELIVERY_MOD": "sink"},
    )

    assert result.returncode == 2
    assert "unknown environment variable SENDARIX_DELIVERY_MOD" in result.stderr
    assert "did you mean SENDARIX_DELIVERY_MODE?" in result.stderr
    assert not database.exists()


@pytest.mark.parametrize(
    "command", [["worker"], ["migrate"], ["keys", "list"], ["keys", "create"]]
)
def test_commands_reject_misspelt_variable(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    monkeypatch.setenv("SENDARIX_DATABASE_ULR", f"sqlite:///{tmp_path / 'x.db'}")
    extra = ["--name", "ci"] if command == ["keys", "create"] else []

    status = main([*command, *extra])

    assert status == 2
    assert "did you mean SENDARIX_DATABASE_URL?" in capsys.readouterr().err


def test_keys_list_missing_sqlite_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "none.db"

    status = main(["keys", "list", "--database-url", f"sqlite:///{database}"])

    error = capsys.readouterr().err
    assert status == 1
    assert f"the SQLite database file {str(database)!r} does not exist" in error
    assert "sendarix migrate" in error
    assert list(tmp_path.iterdir()) == []


def test_keys_revoke_missing_sqlite_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"

    status = main(["keys", "revoke", "key_01", "--database-url", url])

    assert status == 1
    assert "does not exist" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_keys_list_empty_sqlite_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "empty.db"
    database.touch()

    status = main(["keys", "list", "--database-url", f"sqlite:///{database}"])

    error = capsys.readouterr().err
    assert status == 1
    assert f"database sqlite:///{database} has no Sendarix schema" in error
    assert "run `sendarix migrate`" in error
    with sqlite3.connect(database) as connection:
        tables = connection.execute("SELECT name FROM sqlite_master").fetchall()
    assert tables == []


@pytest.mark.postgresql
def test_keys_list_empty_postgresql_schema(
    capsys: pytest.CaptureFixture[str],
) -> None:
    try:
        admin = psycopg.connect(POSTGRESQL_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {POSTGRESQL_URL} is not reachable: {exc}")
    schema = f"hcfg_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            url = schema_url(schema).replace("postgres@", "postgres:pw-secret@", 1)
            status = main(["keys", "list", "--database-url", url])
            tables = admin.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = %s", (schema,)
            ).fetchone()
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")

    error = capsys.readouterr().err
    assert status == 1
    assert "has no Sendarix schema" in error
    assert "pw-secret" not in error
    assert tables == (0,)


def test_quickstart_in_fresh_folder(tmp_path: Path) -> None:
    created = run_cli("keys", "create", "--name", "first", cwd=tmp_path)
    listed = run_cli("keys", "list", cwd=tmp_path)

    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("sk_live_")
    assert (tmp_path / "sendarix.db").exists()
    assert listed.returncode == 0, listed.stderr
    assert "first" in listed.stdout


def test_keys_create_accepts_trailing_dot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'sendarix.db'}"

    create = ["keys", "create", "--name", "ci", "--database-url", url]

    status = main([*create, "--sender-domain", "Acme.Example."])

    assert status == 0
    assert capsys.readouterr().out.startswith("sk_live_")


def test_keys_create_bad_domain_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'sendarix.db'}"

    create = ["keys", "create", "--name", "ci", "--database-url", url]

    status = main([*create, "--sender-domain", "not a domain"])

    error = capsys.readouterr().err
    assert status == 2
    assert "sender_domains.0: the domain 'not a domain' has the label" in error
    assert "postmaster" not in error


def test_keys_create_control_character_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'sendarix.db'}"

    status = main(["keys", "create", "--name", "a\tb", "--database-url", url])

    error = capsys.readouterr().err
    assert status == 2
    assert 'the name "a\\tb" contains a control character (U+0009)' in error


@pytest.mark.parametrize("command", [["keys", "create"], ["keys", "list"], ["migrate"]])
def test_help_omits_server_flags(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--help"])

    output = capsys.readouterr().out
    assert "--database-url" in output
    assert "--http-port" not in output
    assert "--relay-port" not in output
    assert "--worker-concurrency" not in output


def test_worker_help_omits_listen_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["worker", "--help"])

    output = capsys.readouterr().out
    assert "--worker-concurrency" in output
    assert "--http-port" not in output


def test_serve_help_lists_server_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])

    output = capsys.readouterr().out
    assert "--http-port" in output
    assert "--worker-concurrency" in output
