"""The repository's shared fixtures (tests/conftest.py) for the sales service's tests:
`database_url` on SQLite and PostgreSQL, and a private MARQUE_VAR_DIR when this folder
is run on its own; `sales`, a served SalesService (harness.py)."""

from collections.abc import AsyncIterator

import pytest

from services.sales.tests.harness import Harness, serve
from tests.conftest import database_url, pytest_configure, pytest_unconfigure

__all__ = ["database_url", "pytest_configure", "pytest_unconfigure"]


@pytest.fixture
async def sales(database_url: str) -> AsyncIterator[Harness]:
    async with serve(database_url) as h:
        yield h
