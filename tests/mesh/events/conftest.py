"""Shared fixtures for the event tests: both back ends, and a real nats-server.

- `db`: a Database on each back end with the harness's tables;
- `link`: a connected NATS link to the session's server.
"""

from collections.abc import AsyncIterator

import pytest

from mesh.db import Database
from mesh.events.link import Link
from tests.conftest import database_url
from tests.mesh.events import harness
from tests.natsfixture import nats_server, nats_url, private_nats

__all__ = ["database_url", "db", "link", "nats_server", "nats_url", "private_nats"]


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await harness.create_tables(database)
    yield database
    await database.dispose()


@pytest.fixture
async def link(nats_url: str) -> AsyncIterator[Link]:
    lk = Link(nats_url, name="test")
    lk.start()
    assert await lk.wait_connected(10)
    yield lk
    await lk.close()
