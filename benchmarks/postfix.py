"""A throwaway Postfix instance that relays to a sink, loopback only.

The instance has its own ``config_directory``, ``queue_directory`` and
``data_directory`` in a temporary folder, listens on one loopback port,
relays everything from 127.0.0.0/8 to ``[127.0.0.1]:<sink port>`` with no
DNS lookups, and logs to a file there. It runs as root (Postfix's master
drops to the ``postfix`` user) and is stopped with ``postfix stop`` when its
``with`` block ends. Nothing else of Postfix is started or changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

from benchmarks.processes import (
    LOOPBACK,
    ServiceError,
    find_tool,
    free_port,
    wait_for_port,
)

# Postfix's own services, none chrooted, since the queue is a temporary folder.
_MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_missing_reason() -> str:
    """Why a private Postfix instance cannot run here, or an empty string."""
    if find_tool("postfix") is None or find_tool("smtp-source") is None:
        return "Postfix is not installed (Debian package postfix)"
    if os.geteuid() != 0:
        return "a private Postfix instance needs root to start its master daemon"
    return ""


class PostfixInstance:
    def __init__(self, relay_port: int) -> None:
        postfix = find_tool("postfix")
        if postfix is None:
            raise ServiceError(postfix_missing_reason())
        self.postfix = postfix
        self.port = free_port()
        self._relay_port = relay_port
        self.root = Path()
        self.config_directory = Path()
        self.log_path = Path()

    def __enter__(self) -> Self:
        # A folder of its own, since the postfix user must be able to reach
        # it and the benchmarks' temporary folder is private to root.
        self.root = Path(tempfile.mkdtemp(prefix="sendarix-bench-postfix-"))
        self.config_directory = self.root / "config"
        self.log_path = self.root / "postfix.log"
        try:
            self._write_configuration()
            self._postfix("check")
            self._postfix("start")
            if not wait_for_port(self.port):
                raise ServiceError(f"Postfix did not listen on port {self.port}")
        except BaseException:
            # Also on Ctrl-C during start-up: stop what may have started.
            self._stop(check=False)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop(check=True)

    def _stop(self, *, check: bool) -> None:
        try:
            if (self.config_directory / "main.cf").exists():
                self._postfix("stop", check=check)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _write_configuration(self) -> None:
        queue = self.root / "queue"
        data = self.root / "data"
        for directory in (self.config_directory, queue, data):
            directory.mkdir()
        # The master runs as root but its daemons as postfix, which must reach
        # the queue through the temporary folder and own the data directory.
        for directory in (self.root, queue):
            directory.chmod(0o755)
        shutil.chown(data, user="postfix")

        settings = self._main_settings(queue, data)
        main_cf = "".join(f"{name} = {value}\n" for name, value in settings.items())
        (self.config_directory / "main.cf").write_text(main_cf)
        listener = f"{LOOPBACK}:{self.port} inet n - n - - smtpd\n"
        (self.config_directory / "master.cf").write_text(listener + _MASTER_SERVICES)

    def _main_settings(self, queue: Path, data: Path) -> dict[str, object]:
        """Return the ``main.cf`` settings: loopback only, relay only, no DNS."""
        return {
            "compatibility_level": "3.6",
            "config_directory": self.config_directory,
            "queue_directory": queue,
            "data_directory": data,
            "maillog_file": self.log_path,
            "maillog_file_prefixes": self.root,
            "myhostname": "postfix-bench.localhost",
            "mydestination": "",
            "inet_interfaces": LOOPBACK,
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relayhost": f"[{LOOPBACK}]:{self._relay_port}",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "disable_dns_lookups": "yes",
            "smtp_host_lookup": "native",
            "smtpd_peername_lookup": "no",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "smtputf8_enable": "no",
            "biff": "no",
        }

    def _postfix(self, command: str, *, check: bool = True) -> None:
        result = subprocess.run(
            [self.postfix, "-c", str(self.config_directory), command],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if check and result.returncode != 0:
            log = self.log_path.read_text() if self.log_path.exists() else ""
            raise ServiceError(
                f"postfix {command} failed with {result.returncode}: "
                f"{result.stderr.strip()}\n{log[-3000:]}"
            )
