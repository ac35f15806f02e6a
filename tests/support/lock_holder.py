"""A separate process that holds a SQLite writer lock file."""

from __future__ import annotations

import subprocess
import sys
import textwrap

__all__ = ["hold_lock"]

# Holds the writer lock file given as the argument until a line arrives on
# standard input, as another Sendarix process does during a transaction.
LOCK_HOLDER = textwrap.dedent(
    """
    import fcntl, sys
    with open(sys.argv[1], "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        print("held", flush=True)
        sys.stdin.readline()
    """
)


def hold_lock(path: str) -> subprocess.Popen[str]:
    """Start a process that holds the writer lock at ``path``, and return it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == "held\n"
    return holder
