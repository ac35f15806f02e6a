"""Random bytes read ahead from the operating system."""

from __future__ import annotations

import os

from sendarix_backends.randomness import random_bytes


def test_sizes_and_no_repeats() -> None:
    # More than one block of 64 KiB, so the pool is refilled in between.
    draws = [random_bytes(10) for _ in range(7_000)]

    assert {len(data) for data in draws} == {10}
    assert len(set(draws)) == len(draws)
    assert len(random_bytes(100_000)) == 100_000


def test_forked_child_draws_its_own_bytes() -> None:
    random_bytes(10)  # the parent has a block in its pool
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(writer, random_bytes(10))
        finally:
            os._exit(0)
    os.close(writer)
    child = os.read(reader, 10)
    os.close(reader)
    os.waitpid(pid, 0)

    assert len(child) == 10
    assert child != random_bytes(10)
