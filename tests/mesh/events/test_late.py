"""`LateBound`: a handler started before the lifespan waits for its engine, then is told the
service is not ready (the event retried), and stops using it once unbound."""

from __future__ import annotations

import asyncio

import pytest

from mesh.errors import Unavailable
from mesh.events.late import LateBound


def _not_ready() -> Exception:
    return Unavailable("not ready", reason="NOT_READY")


async def test_a_handler_waits_for_the_lifespan_to_bind_the_engine() -> None:
    late: LateBound[str] = LateBound(_not_ready, wait_seconds=2.0, step=0.01)
    waiting = asyncio.ensure_future(late.get())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    late.bind("engine")
    assert await waiting == "engine" and late.current == "engine"


async def test_none_bound_in_time_is_not_ready_and_unbinding_stops_its_use() -> None:
    late: LateBound[str] = LateBound(_not_ready, wait_seconds=0.05, step=0.01)
    with pytest.raises(Unavailable):
        await late.get()
    late.bind("engine")
    late.bind(None)
    assert late.current is None
    with pytest.raises(Unavailable):
        await late.get()
