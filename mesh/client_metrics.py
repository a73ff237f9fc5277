"""An outgoing call counted in `grpc_client_started_total`, `grpc_client_handled_total`
and `grpc_client_handling_seconds` (go-grpc-prometheus names, through
`mesh.metrics.client_method`), the way each call kind can be measured without an extra
task per call."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc

from mesh.metrics import ClientMethod


async def measured_unary(
    continuation: Any, measure: ClientMethod, details: Any, request: Any
) -> Any:
    """Unary-unary: the caller awaits the whole call anyway, so it is awaited here (no
    extra task or callback per call)."""
    measure.started.inc()
    start = time.perf_counter()
    code = grpc.StatusCode.UNKNOWN
    try:
        call = await continuation(details, request)
        code = await call.code()
        return call
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
        raise
    except asyncio.CancelledError:
        code = grpc.StatusCode.CANCELLED
        raise
    finally:
        measure.done(code, time.perf_counter() - start)


async def measured_stream(
    continuation: Any, measure: ClientMethod, details: Any, request: Any
) -> Any:
    """Streams: the call is handed out at once (the caller reads or writes it) and
    measured when it ends."""
    measure.started.inc()
    start = time.perf_counter()
    try:
        call = await continuation(details, request)
    except grpc.aio.AioRpcError as exc:
        measure.done(exc.code(), time.perf_counter() - start)
        raise
    add = getattr(call, "add_done_callback", None)
    if add is None:
        return call

    def finished(done_call: Any) -> None:
        # aio's code() is a coroutine; it completes at once on a finished call.
        task = asyncio.ensure_future(done_call.code())
        task.add_done_callback(
            lambda t: measure.done(
                t.result()
                if not t.cancelled() and t.exception() is None
                else grpc.StatusCode.UNKNOWN,
                time.perf_counter() - start,
            )
        )

    add(finished)
    return call
