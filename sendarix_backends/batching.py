"""Group commit: many concurrent callers share one storage call.

Each caller adds its item and waits. The first caller to find no flush in
progress becomes the leader and flushes everything pending, batch after
batch, until the list is empty. Under load this turns 64 concurrent
``202``s into a handful of commits; with one caller it adds no delay.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import anyio

__all__ = ["GroupCommitter"]

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class _Batch(Generic[ItemT, ResultT]):
    """Items that one flush commits together, and the one event their
    callers wait on, so a batch of 64 creates one event rather than 64."""

    __slots__ = ("done", "error", "items", "results")

    def __init__(self) -> None:
        self.items: list[ItemT] = []
        self.done = anyio.Event()
        self.results: Sequence[ResultT] = ()
        self.error: BaseException | None = None


class GroupCommitter(Generic[ItemT, ResultT]):
    def __init__(
        self,
        flush: Callable[[Sequence[ItemT]], Awaitable[Sequence[ResultT]]],
        *,
        max_batch: int = 500,
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        # Batches not yet handed to ``flush``, oldest first. Only the last
        # one takes new items.
        self._pending: list[_Batch[ItemT, ResultT]] = []
        self._flushing = False

    async def submit(self, item: ItemT) -> ResultT:
        """Add ``item`` to the next batch and return its result once committed."""
        pending = self._pending
        if not pending or len(pending[-1].items) >= self._max_batch:
            pending.append(_Batch())
        batch = pending[-1]
        index = len(batch.items)
        batch.items.append(item)
        if not self._flushing:
            await self._lead()
        await batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return batch.results[index]

    async def _lead(self) -> None:
        self._flushing = True
        # Shielded: the leader flushes for others too, so a cancelled request
        # (a client that hung up) must not strand their items.
        with anyio.CancelScope(shield=True):
            try:
                while self._pending:
                    await self._flush_batch(self._pending.pop(0))
            finally:
                self._flushing = False

    async def _flush_batch(self, batch: _Batch[ItemT, ResultT]) -> None:
        try:
            results = await self._flush(batch.items)
        except Exception as exc:
            batch.error = exc
        else:
            if len(results) == len(batch.items):
                batch.results = results
            else:
                batch.error = RuntimeError(
                    f"the flush returned {len(results)} results for "
                    f"{len(batch.items)} items"
                )
        batch.done.set()
