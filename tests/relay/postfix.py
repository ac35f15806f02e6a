"""A throwaway Postfix instance that relays everything to a Sendarix relay.

It has its own configuration, queue and log in a temporary folder, and no
listening socket. Mail enters only through ``sendmail -C <folder>``, as an
unchanged legacy application would hand it over. It leaves through the
relay host with STARTTLS and SASL AUTH, the API key as the password.
Running it needs root, because the Postfix master process starts as root
and runs its daemons as the ``postfix`` user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["PostfixInstance", "postfix_unavailable"]

# The services a sending-only Postfix needs: no smtpd, so nothing listens.
_MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
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


def postfix_unavailable() -> str | None:
    """Return why a private Postfix can't run here, or None if it can."""
    if shutil.which("postfix") is None or shutil.which("sendmail") is None:
        return "Postfix is not installed (Debian package postfix)"
    if os.geteuid() != 0:
        return "a private Postfix instance needs root to start its master process"
    return None


class PostfixInstance:
    """Postfix with ``relayhost = [127.0.0.1]:<relay_port>``."""

    def __init__(self, *, relay_port: int, username: str, password: str) -> None:
        # Postfix daemons run as the postfix user, which must reach the
        # queue, so the folder is not under pytest's private tmp_path.
        self.folder = Path(tempfile.mkdtemp(prefix="sendarix-postfix-"))
        self.folder.chmod(0o755)
        self.config = self.folder / "etc"
        self.log_path = self.folder / "maillog"
        self._relay_port = relay_port
        self._credentials = f"{username}:{password}"
        self._master: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the master in the foreground, as a child of this process.

        A master started with ``postfix start`` would detach, and where no
        init process reaps orphans its exit would leave zombie processes.
        """
        self.config.mkdir()
        (self.folder / "queue").mkdir()
        data = self.folder / "data"
        data.mkdir()
        shutil.chown(data, user="postfix")
        (self.config / "main.cf").write_text(self._main_cf())
        (self.config / "master.cf").write_text(_MASTER_CF)

        self._master = subprocess.Popen(
            ["postfix", "-c", str(self.config), "start-fg"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while "daemon started" not in self.log():
            if self._master.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Postfix did not start:\n{self.log()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self._master is not None and self._master.poll() is None:
            self._postfix("stop", check=False)
            try:
                self._master.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._master.kill()
                self._master.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def sendmail(self, message: bytes, sender: str) -> None:
        """Hand ``message`` (LF line ends, as applications write it) to
        ``sendmail -t -i``: recipients from the headers, and a line with a
        single dot is content, as with PHP's mail()."""
        subprocess.run(
            ["sendmail", "-C", str(self.config), "-f", sender, "-t", "-i"],
            input=message,
            check=True,
            timeout=30,
        )

    def log(self) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> PostfixInstance:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _main_cf(self) -> str:
        nexthop = f"[127.0.0.1]:{self._relay_port}"
        return f"""\
compatibility_level = 3.6
queue_directory = {self.folder / "queue"}
data_directory = {self.folder / "data"}
maillog_file = {self.log_path}
maillog_file_prefixes = {self.folder}
mail_owner = postfix
setgid_group = postdrop
myhostname = legacy.sendarix.test
myorigin = acme.example
mydestination =
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
relayhost = {nexthop}
smtp_tls_security_level = encrypt
smtp_tls_loglevel = 1
smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = inline:{{ {nexthop}={self._credentials} }}
smtp_sasl_security_options = noanonymous
smtp_sasl_tls_security_options = noanonymous
"""

    def _postfix(self, command: str, *, check: bool = True) -> None:
        result = subprocess.run(
            ["postfix", "-c", str(self.config), command],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"postfix {command} failed with {result.returncode}:\n"
                f"{result.stderr}\n{self.log()}"
            )
