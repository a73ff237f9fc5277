"""The sales service's domain events: what it emits (built here from domain records,
written by the unit of work that made the change) and what it does with other services'
events.

Emitted (package `marque.sales.v1`, file `sales_events.proto`; the subject is
the sales id): SalesCreated, by CreateSales in its transaction.
Consumed: nothing yet. To take another service's event, declare a handler and list it in
`subscriptions_in(...)` below; it runs in a unit of work that also records the event in the
inbox, so a redelivered event changes nothing:

    from marque.lead.v1 import lead_events_pb2
    from mesh.events.envelope import Envelope
    from mesh.events.subscriptions import subscribe
    from mesh.unit_of_work import UnitOfWork

    @subscribe(lead_events_pb2.LeadCreated)  # producer: the package's domain ("lead")
    async def on_lead_created(
        uow: UnitOfWork, event: lead_events_pb2.LeadCreated, envelope: Envelope
    ) -> None:
        ...  # writes on uow.conn; may uow.emit(...) the service's own events

    EVENTS = EventSpec(..., subscriptions=subscriptions_in(on_lead_created))

A handler whose effect is one row per event takes the whole batch instead
(`@subscribe(Event, batch=True)`, `async def h(uow, events, envelopes)`) and writes it with
one `executemany` (docs/mesh.md, "Events").

`EVENTS` is the wiring `mesh.service.Service(events=EVENTS)` runs (app.py) and
`python -m mesh.events.replay sales` loads.
"""

from __future__ import annotations

from marque.sales.v1 import sales_events_pb2

from mesh.convert import timestamp
from mesh.events.runtime import EventSpec
from mesh.events.subscriptions import subscriptions_in
from services.sales.domain.model import Sales
from services.sales.store.tables import INBOX, OUTBOX


def created(record: Sales) -> sales_events_pb2.SalesCreated:
    """A new sales, as other services learn of it."""
    return sales_events_pb2.SalesCreated(
        sales_id=record.id,
        dealer_id=record.dealer_id,
        display_name=record.display_name,
        create_time=timestamp(record.create_time),
    )


EVENTS = EventSpec(
    service="sales",
    outbox=OUTBOX,
    inbox=INBOX,
    subscriptions=subscriptions_in(),  # the handlers, e.g. subscriptions_in(on_lead_created)
)
