"""Group commit: concurrent callers share flushes and each gets its own result."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from sendarix_backends.batching import GroupCommitter

pytestmark = pytest.mark.anyio


class Recorder:
    """A flush that records each batch and returns every item doubled."""

    def __init__(self, *, fail: bool = False, drop_one: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail
        self.drop_one = drop_one

    async def flush(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        # Give the other callers a chance to queue behind this flush.
        await anyio.sleep(0.01)
        if self.fail:
            raise OSError("disk full")
        results = [item * 2 for item in items]
        return results[:-1] if self.drop_one else results


async def submit_all(
    committer: GroupCommitter[int, int], items: Sequence[int]
) -> dict[int, int | BaseException]:
    outcomes: dict[int, int | BaseException] = {}

    async def submit(item: int) -> None:
        try:
            outcomes[item] = await committer.submit(item)
        except Exception as exc:
            outcomes[item] = exc

    async with anyio.create_task_group() as group:
        for item in items:
            group.start_soon(submit, item)
    return outcomes


async def test_each_caller_gets_own_result() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.flush)

    outcomes = await submit_all(committer, range(20))

    assert outcomes == {item: item * 2 for item in range(20)}
    assert sorted(item for batch in recorder.batches for item in batch) == list(
        range(20)
    )


async def test_waiting_callers_share_flush() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.flush)

    await submit_all(committer, range(20))

    # The first caller flushes alone; the others queue behind it.
    assert recorder.batches[0] == [0]
    assert recorder.batches[1] == list(range(1, 20))
    assert len(recorder.batches) == 2


async def test_batches_stay_under_max() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.flush, max_batch=3)

    outcomes = await submit_all(committer, range(10))

    assert outcomes == {item: item * 2 for item in range(10)}
    assert all(len(batch) <= 3 for batch in recorder.batches)
    assert [item for batch in recorder.batches for item in batch] == list(range(10))


async def test_flush_error_reaches_every_caller() -> None:
    committer = GroupCommitter(Recorder(fail=True).flush)

    outcomes = await submit_all(committer, range(5))

    for item in range(5):
        assert isinstance(outcomes[item], OSError), outcomes[item]


async def test_missing_result_fails_whole_batch() -> None:
    committer = GroupCommitter(Recorder(drop_one=True).flush)

    outcomes = await submit_all(committer, range(5))

    for item in range(5):
        outcome = outcomes[item]
        assert isinstance(outcome, RuntimeError), outcome
        assert "returned" in str(outcome)


async def test_committer_recovers_after_error() -> None:
    recorder = Recorder(fail=True)
    committer = GroupCommitter(recorder.flush)
    await submit_all(committer, range(3))

    recorder.fail = False
    outcomes = await submit_all(committer, [7, 8])

    assert outcomes == {7: 14, 8: 16}
