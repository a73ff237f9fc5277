"""A database error is logged once and without what the caller sent (DESIGN.md §8): no SQL
parameters, no PostgreSQL DETAIL or message quoting a value, on both back ends."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from marque.testing.v1 import testing_service_pb2 as pb
from marque.testing.v1 import testing_service_pb2_grpc as pb_grpc
from sqlalchemy import text

from mesh.config import Settings
from mesh.db import Database
from mesh.logging import make_handler
from mesh.server import Servicer, ServiceSpec, start
from tests.mesh.serving import bearer, keys_in

MIGRATIONS = Path(__file__).parent / "migrations"
NAME = "Han Meimei"  # a personal value the caller sent


class Crashing(pb_grpc.TestingServiceServicer):
    """Echo writes the message where the database refuses it."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def Echo(self, request: pb.EchoRequest, context: Any) -> pb.EchoResponse:
        async with self.db.begin() as conn:
            if not self.db.is_sqlite:  # PostgreSQL quotes the value in its message
                await conn.execute(text("SELECT CAST(:v AS INTEGER)"), {"v": request.message})
            insert = text("INSERT INTO notes (id, body) VALUES (1, :v)")
            await conn.execute(insert, {"v": request.message})
            await conn.execute(insert, {"v": request.message})  # the key is taken
        return pb.EchoResponse()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await database.migrate(MIGRATIONS)
    yield database
    await database.dispose()


async def test_engines_hide_parameters(db: Database) -> None:
    assert db.engine.sync_engine.hide_parameters is True


async def test_a_database_error_is_logged_once_without_request_data(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys = keys_in(tmp_path)
    spec = ServiceSpec(
        "lead",
        [
            Servicer(
                descriptor=pb.DESCRIPTOR.services_by_name["TestingService"],
                add_to_server=pb_grpc.add_TestingServiceServicer_to_server,
                impl=Crashing(db),
            )
        ],
    )
    running = await start(
        spec, Settings(service="lead", var_dir=tmp_path), keys=keys, serve_metrics=False
    )
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await pb_grpc.TestingServiceStub(ch).Echo(
                    pb.EchoRequest(message=NAME), metadata=bearer(keys)
                )
    finally:
        await running.stop(0.5)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert NAME not in (err.value.details() or "")
    errors = [r for r in caplog.records if r.exc_info]
    assert len(errors) == 1 and errors[0].name == "mesh.chain"
    assert "Meimei" not in caplog.text
    assert ("DataError" if not db.is_sqlite else "IntegrityError") in caplog.text


async def test_the_json_handler_withholds_database_messages_logged_anywhere(db: Database) -> None:
    """What a service logs itself (e.g. `log.exception` in a writer task) goes through the
    process's handler, which withholds a database error's message there too."""
    out = io.StringIO()
    log = logging.getLogger("test.db_logging")
    log.addHandler(make_handler("lead", out))
    try:
        async with db.begin() as conn:
            insert = text("INSERT INTO notes (id, body) VALUES (7, :v)")
            await conn.execute(insert, {"v": NAME})
            await conn.execute(insert, {"v": NAME})
    except Exception:
        log.exception("batch failed")
    finally:
        log.handlers.clear()
    line = out.getvalue()
    assert "IntegrityError" in line and "Meimei" not in line
