"""Fixtures of the DMS adapter's tests: `database_url` (SQLite, and PostgreSQL with
MARQUE_TEST_POSTGRES_URL) from tests/conftest.py, and `dms`: the DMS simulator served over
real HTTP on a free loopback port."""

from collections.abc import AsyncIterator

import pytest

from services.adapters.dms.tests.helpers import Dms, running_dms
from tests.conftest import database_url, pytest_configure, pytest_unconfigure

__all__ = ["database_url", "pytest_configure", "pytest_unconfigure"]


@pytest.fixture
async def dms() -> AsyncIterator[Dms]:
    async with running_dms() as d:
        yield d
