"""mesh.service: a service declared by its servicer class, database and lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from marque.testing.v1 import testing_service_pb2 as pb
from marque.testing.v1 import testing_service_pb2_grpc as pb_grpc

from mesh.config import Settings
from mesh.idempotency import request_ids_table
from mesh.schema import new_metadata
from mesh.server import start
from mesh.service import Context, Service, generated_parts
from tests.mesh import testing_servicer as testing

TestingServicer = testing.TestingServicer
TestingServicer.__test__ = False  # type: ignore[attr-defined]


def test_the_descriptor_and_adder_come_from_the_generated_base_class() -> None:
    descriptor, add = generated_parts(TestingServicer)
    assert descriptor.full_name == "marque.testing.v1.TestingService"
    assert add is pb_grpc.add_TestingServiceServicer_to_server
    with pytest.raises(TypeError, match="no generated"):
        generated_parts(object)


async def test_lifespan_order_database_and_sweeper(tmp_path: Path) -> None:
    events: list[str] = []
    table = request_ids_table(new_metadata())

    @asynccontextmanager
    async def lifespan(ctx: Context) -> AsyncIterator[TestingServicer]:
        async with ctx.db.engine.begin() as conn:  # the database is open in the lifespan
            await conn.run_sync(table.metadata.create_all)
            events.append(f"started {ctx.settings.service}")
        yield TestingServicer()
        async with ctx.db.engine.connect() as conn:  # and still open when it ends
            await conn.execute(sa.select(sa.func.count()).select_from(table))
        events.append("stopped")

    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    spec = Service("lead", TestingServicer, lifespan, request_ids=table).spec()
    settings = Settings(service="lead", grpc_port=0, metrics_port=0, database_url=url)
    running = await start(spec, settings, serve_metrics=False)
    async with grpc.aio.insecure_channel(running.address) as channel:
        stub = pb_grpc.TestingServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:  # served, by the lifespan's servicer
            await stub.Echo(pb.EchoRequest(message="hi"), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    await running.stop(1.0)
    assert events == ["started lead", "stopped"]


async def test_a_failing_lifespan_closes_what_was_opened(tmp_path: Path) -> None:
    @asynccontextmanager
    async def lifespan(ctx: Context) -> AsyncIterator[TestingServicer]:
        raise RuntimeError("no start")
        yield TestingServicer()  # pragma: no cover

    spec = Service("lead", TestingServicer, lifespan).spec()
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(RuntimeError, match="no start"):
        await start(spec, Settings(service="lead", database_url=url), serve_metrics=False)
