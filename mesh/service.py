"""What a service declares to be served: its servicer class, its database, its lifespan.

    SERVICE = Service(
        name="lead",
        servicer=LeadServicer,          # a subclass of the generated LeadServiceServicer
        lifespan=lifespan,              # async context manager: Context -> the servicer
        migrations=store.MIGRATIONS,    # the service's Alembic scripts
        request_ids=store.request_ids,  # swept after their retention
        events=events.EVENTS,           # its outbox, inbox and subscriptions (optional)
    )

The mesh does the rest, the same way for every service: the gRPC descriptor and the
generated `add_..._to_server` are derived from the servicer class; the database is opened
from `settings.database_url` and migrated before the lifespan starts; the request-id
retention sweeper runs while the service does; with `events`, the relay of its outbox, its
consumers and their sweeps (mesh.events.runtime.Events) start after the migrations, before
the lifespan, and stop after it (so the lifespan's last commits are still relayed while
the process drains); the database is disposed last. `Service.spec()` is the
`mesh.server.ServiceSpec` that `mesh.server.run` and `start` take, so a service's
`__main__` stays `run(SERVICE.spec())`.
"""

from __future__ import annotations

import datetime as dt
import importlib
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mesh.config import Settings
from mesh.db import Database
from mesh.events.runtime import Events, EventSpec
from mesh.events.settings import EventSettings
from mesh.retention import request_id_sweeper, utc_now
from mesh.server import Servicer, ServiceSpec


@dataclass(frozen=True)
class Context:
    """What a service's lifespan is given: its settings and its (migrated) database."""

    settings: Settings
    db: Database


Lifespan = Callable[[Context], AbstractAsyncContextManager[Any]]


@dataclass(frozen=True)
class Service:
    """One service, as it declares itself (see the module docstring)."""

    name: str
    servicer: type
    lifespan: Lifespan
    migrations: Path | None = None
    request_ids: sa.Table | None = None
    # The clock the service stamps its request ids with (the sweeper's "now"); tests that
    # move time pass theirs.
    clock: Callable[[], dt.datetime] | None = None
    # What the service emits and consumes; None: no relay and no consumers run (a service
    # may still write its outbox, e.g. under a test harness that checks the rows).
    events: EventSpec | None = None
    # Where events travel; None: from the environment (MARQUE_NATS_URL...) at start-up.
    event_settings: EventSettings | None = None

    def spec(self) -> ServiceSpec:
        """The ServiceSpec that serves this service."""
        descriptor, add_to_server = generated_parts(self.servicer)
        stack = AsyncExitStack()
        running: list[Any] = []

        async def startup(settings: Settings) -> None:
            try:
                db = Database(settings.database_url)
                stack.push_async_callback(db.dispose)
                if self.migrations is not None:
                    await db.migrate(self.migrations)
                if self.request_ids is not None:
                    column = self.request_ids.c.create_time
                    clock = self.clock or utc_now
                    sweeper = request_id_sweeper(db, column, settings, clock)
                    sweeper.start()
                    stack.push_async_callback(sweeper.stop)
                if self.events is not None:
                    events = Events(self.events, db, settings=self.event_settings)
                    await events.start()
                    stack.push_async_callback(events.stop)
                running.append(
                    await stack.enter_async_context(self.lifespan(Context(settings, db)))
                )
            except BaseException:
                await stack.aclose()
                raise

        async def shutdown() -> None:
            running.clear()
            await stack.aclose()

        def servicer() -> Any:
            if not running:
                raise RuntimeError(f"{self.name}: the servicer is asked for before start-up")
            return running[0]

        return ServiceSpec(
            name=self.name,
            servicers=[Servicer(descriptor, add_to_server, factory=servicer)],
            startup=startup,
            shutdown=shutdown,
        )


def generated_parts(servicer: type) -> tuple[Any, Callable[[Any, Any], None]]:
    """The service descriptor and `add_XServicer_to_server` of a servicer class, from the
    generated base class it derives from (`XServicer` in a `*_pb2_grpc` module)."""
    for base in servicer.__mro__:
        module_name = base.__module__
        if not module_name.endswith("_pb2_grpc") or not base.__name__.endswith("Servicer"):
            continue
        grpc_module = sys.modules[module_name]
        messages = importlib.import_module(module_name.removesuffix("_grpc"))
        service = base.__name__.removesuffix("Servicer")
        add = getattr(grpc_module, f"add_{base.__name__}_to_server")
        return messages.DESCRIPTOR.services_by_name[service], add
    raise TypeError(f"{servicer.__name__} derives from no generated XServicer class")
