"""The repository's shared fixtures (tests/conftest.py) for the member service's tests:
`database_url` on SQLite and PostgreSQL, and a private MARQUE_VAR_DIR when this folder
is run on its own; `member`, a served MemberService (harness.py)."""

from collections.abc import AsyncIterator

import pytest

from services.member.tests.harness import Harness, serve
from tests.conftest import database_url, pytest_configure, pytest_unconfigure

__all__ = ["database_url", "member", "pytest_configure", "pytest_unconfigure"]


@pytest.fixture
async def member(database_url: str) -> AsyncIterator[Harness]:
    async with serve(database_url) as h:
        yield h
