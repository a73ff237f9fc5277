"""The repository's shared fixtures (tests/conftest.py) for the lead service's tests:
`database_url` on SQLite and PostgreSQL, and a private MARQUE_VAR_DIR when this folder
is run on its own; `lead`, a served lead service (see harness.py)."""

from collections.abc import AsyncIterator

import pytest

from services.lead.tests.harness import Harness, serve
from tests.conftest import database_url, pytest_configure, pytest_unconfigure

__all__ = ["database_url", "lead", "pytest_configure", "pytest_unconfigure"]


@pytest.fixture
async def lead(database_url: str) -> AsyncIterator[Harness]:
    """The lead service on the `database_url` back end, with the harness's dealers."""
    async with serve(database_url) as h:
        yield h
