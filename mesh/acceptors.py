"""More outstanding asks for calls than grpc.aio's one, so one turn of the event loop takes
every waiting call out of grpc's core (why: mesh/shedding.py's docstring).

grpc's private `_request_call`, `_handle_rpc` and `_schedule_rpc_coro` are used exactly as
its main loop uses them, and checked at start: with another grpcio the server falls back
to grpc's own one-by-one accept.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import TYPE_CHECKING, Any

import grpc.aio

if TYPE_CHECKING:
    from mesh.shedding import Shedder

log = logging.getLogger("mesh.shedding")  # part of load shedding, logged as such

# Extra outstanding asks for calls beside grpc's own one: a turn of the event loop then takes
# up to this many waiting calls out of the core instead of one every second turn.
ACCEPTORS = 16


def _grpc_internals(server: grpc.aio.Server) -> tuple[Any, Any, Any] | None:
    """grpc's core server and the two functions its main loop runs per call, if this grpcio
    has them with the signatures this module was written against (1.78); else None."""
    try:
        from grpc._cython import cygrpc  # type: ignore[attr-defined]

        core = server._server  # type: ignore[attr-defined]
        handle, schedule = cygrpc._handle_rpc, cygrpc._schedule_rpc_coro
        expected = {
            handle: ["generic_handlers", "interceptors", "rpc_state", "loop"],
            schedule: ["rpc_coro", "rpc_state", "loop"],
        }
        for function, names in expected.items():
            if list(inspect.signature(function).parameters)[: len(names)] != names:
                return None
        if not callable(getattr(core, "_request_call", None)):
            return None
    except (AttributeError, ImportError, TypeError, ValueError):
        return None
    return core, handle, schedule


class Acceptors:
    """More outstanding asks for calls, so calls leave the core as fast as they arrive; and
    the shedder's loop-lag sentinel, for as long as the server runs."""

    def __init__(
        self,
        server: grpc.aio.Server,
        handlers: list[Any],
        shedder: Shedder,
        count: int = ACCEPTORS,
    ) -> None:
        self._calls: set[asyncio.Task[Any]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._shedder = shedder
        loop = asyncio.get_running_loop()
        shedder.watch(loop)
        internals = _grpc_internals(server)
        if internals is None:
            log.warning("this grpcio has no known accept internals: calls are taken one by one")
            return
        self._tasks = [
            loop.create_task(self._accept(loop, handlers, *internals)) for _ in range(count)
        ]

    @property
    def running(self) -> int:
        """Acceptors still asking for calls."""
        return sum(not t.done() for t in self._tasks)

    async def _accept(
        self,
        loop: asyncio.AbstractEventLoop,
        handlers: list[Any],
        core: Any,
        handle: Any,
        schedule: Any,
    ) -> None:
        calls = self._calls
        while core.is_running():  # checked before each ask: a stopped core must not be asked
            try:
                state = await core._request_call()
            except Exception:  # shutdown fails the outstanding asks
                return
            # What grpc's main loop does with a call (without its maximum_concurrent_rpcs).
            call = loop.create_task(schedule(handle(handlers, (), state, loop, False), state, loop))
            calls.add(call)
            call.add_done_callback(calls.discard)

    async def wait_stopped(self) -> None:
        """After the server stopped: its shutdown ended every ask; wait for the acceptors."""
        self._shedder.unwatch()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=5.0)
            for task in pending:
                task.cancel()
