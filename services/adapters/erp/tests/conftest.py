"""Fixtures of the ERP adapter's tests: `database_url` (SQLite, and PostgreSQL with
MARQUE_TEST_POSTGRES_URL) from tests/conftest.py, and `sap`: the SAP simulator served over
real HTTP on a free loopback port."""

from collections.abc import AsyncIterator

import pytest

from services.adapters.erp.tests.helpers import Sap, running_sap
from tests.conftest import database_url, pytest_configure, pytest_unconfigure

__all__ = ["database_url", "pytest_configure", "pytest_unconfigure"]


@pytest.fixture
async def sap() -> AsyncIterator[Sap]:
    async with running_sap() as s:
        yield s
