"""The group-commit writer on its own: batching, failure isolation, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from mesh.groupcommit import GroupCommitter, WriterFailed, WriterStopped


class Recorder:
    """A fake batch function: doubles ints, fails whole batches containing a poison item."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        await asyncio.sleep(0.01)  # a commit
        if -1 in items:
            raise RuntimeError("constraint violated")
        return [ValueError("odd") if i == 1013 else i * 2 for i in items]


async def test_concurrent_items_share_transactions() -> None:
    rec = Recorder()
    writer = GroupCommitter(rec, max_batch=50)
    writer.start()
    results = await asyncio.gather(*(writer.submit(i) for i in range(100)))
    await writer.stop()
    assert results == [i * 2 for i in range(100)]
    assert len(rec.batches) <= 4  # the first alone, then the rest in groups of <= 50
    assert max(len(b) for b in rec.batches) == 50


async def test_a_failing_batch_is_retried_item_by_item() -> None:
    rec = Recorder()
    writer = GroupCommitter(rec)
    writer.start()
    results = await writer.submit_many([1, -1, 2, 1013])
    await writer.stop()
    assert results[0] == 2 and results[2] == 4
    assert isinstance(results[1], WriterFailed)
    assert isinstance(results[3], ValueError)  # an item's own error reaches only its caller
    assert rec.batches[0] == [1, -1, 2, 1013]
    assert [1] in rec.batches and [2] in rec.batches


async def test_stop_drains_then_refuses() -> None:
    rec = Recorder()
    writer = GroupCommitter(rec)
    writer.start()
    pending = [asyncio.ensure_future(writer.submit(i)) for i in range(10)]
    await asyncio.sleep(0)
    await writer.stop()
    assert [p.result() for p in pending] == [i * 2 for i in range(10)]
    with pytest.raises(WriterStopped):
        await writer.submit(1)


async def _staggered(writer: GroupCommitter[int, int]) -> list[int]:
    """Two at once, one while they commit, one after that commit is done."""

    async def later(delay: float, item: int) -> int:
        await asyncio.sleep(delay)
        return await writer.submit(item)

    return list(
        await asyncio.gather(writer.submit(0), writer.submit(1), later(0.005, 2), later(0.04, 3))
    )


@pytest.mark.parametrize(
    ("linger", "batches"), [(0.0, [[0, 1], [2], [3]]), (0.1, [[0, 1], [2, 3]])]
)
async def test_a_busy_writer_lingers_for_company(linger: float, batches: list[list[int]]) -> None:
    rec = Recorder()
    writer = GroupCommitter(rec, linger=linger)
    writer.start()
    assert await _staggered(writer) == [0, 2, 4, 6]
    await writer.stop()
    assert rec.batches == batches


async def test_a_lone_caller_never_waits_for_company() -> None:
    rec = Recorder()
    writer = GroupCommitter(rec, linger=30.0)  # would time the test out if it applied
    writer.start()
    for i in range(3):
        assert await asyncio.wait_for(writer.submit(i), timeout=5) == i * 2
    await writer.stop()
    assert rec.batches == [[0], [1], [2]]
