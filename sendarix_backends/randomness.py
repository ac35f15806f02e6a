"""Random bytes for ids, read from the operating system in blocks.

``os.urandom`` is a system call, and CPython gives up the GIL around it. In
a busy process the caller then queues for the GIL again behind the
database threads, which can take up to the switch interval (5 ms). An id
takes ten random bytes, so reading 64 KiB at a time makes one call per
6,553 ids: about one a second in a worker delivering 3,000 messages/s,
which makes two ids per message. The bytes are the same ``os.urandom``
output, only read ahead.
"""

from __future__ import annotations

import os
import threading

__all__ = ["random_bytes"]

_BLOCK_SIZE = 65_536


class _Pool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._block = b""
        self._offset = 0

    def take(self, size: int) -> bytes:
        if size > _BLOCK_SIZE:
            return os.urandom(size)
        with self._lock:
            end = self._offset + size
            if end > len(self._block):
                self._block = os.urandom(_BLOCK_SIZE)
                self._offset, end = 0, size
            data = self._block[self._offset : end]
            self._offset = end
            return data

    def forget(self) -> None:
        """Drop the bytes read so far, so the next call reads new ones."""
        self._lock = threading.Lock()
        self._block = b""
        self._offset = 0


_pool = _Pool()
# A forked child must not hand out the bytes its parent hands out. The hook
# costs nothing per id, where checking os.getpid() made a system call each
# time (glibc does not cache the pid).
if hasattr(os, "register_at_fork"):  # not on Windows, which cannot fork
    os.register_at_fork(after_in_child=_pool.forget)


def random_bytes(size: int) -> bytes:
    """Return ``size`` bytes from ``os.urandom``, read ahead in blocks."""
    return _pool.take(size)
