"""Shared fixtures for the event tests: both back ends, and a real nats-server."""

from tests.conftest import database_url
from tests.natsfixture import nats_server, nats_url, private_nats

__all__ = ["database_url", "nats_server", "nats_url", "private_nats"]
