"""The ERP adapter's tables (SQLAlchemy 2.0 Core), as the migrations make them.

- `sap_orders`: one row per Marque order that has its SAP sales order: the SAP number
  (unique), SAP's net amount (the decimal string SAP sent), the SAP status last read, how
  the adapter got it (`state`: CREATED by its create, FOUND by a look-up after an unclear
  attempt), SAP's creation time and when it was recorded.
- `sap_claims`: a Marque order whose SAP create is under way or was tried without its
  result recorded (engine.py): `lease_until` while a call is in flight (another delivery
  of the order waits), `attempts` so far. Deleted with the `sap_orders` row that records
  the result; a row left behind (a crash, a timeout, an outage) means "SAP may have the
  order": the next attempt looks it up before creating.
- `request_ids` has the shape every service shares (the adapter has no mutating RPC yet;
  kept so the mesh's sweep and the shape stay alike).
- `outbox` and `inbox` (mesh/events): SalesOrderCreated, and the OrderConfirmed handled.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from mesh.events.inbox import Inbox, inbox_table
from mesh.events.outbox import Outbox, outbox_table
from mesh.idempotency import RequestIds, request_ids_table
from mesh.schema import UtcDateTime, new_metadata

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

metadata = new_metadata()

sap_orders = sa.Table(
    "sap_orders",
    metadata,
    sa.Column("order_id", sa.String(35), primary_key=True),
    sa.Column("sap_sales_order", sa.String(10), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("net_amount", sa.String(24), nullable=False),
    sa.Column("currency", sa.String(5), nullable=False),
    sa.Column("sap_create_time", UtcDateTime(), nullable=True),
    sa.Column("record_time", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("sap_sales_order", name="uq_sap_orders_sap_sales_order"),
)

sap_claims = sa.Table(
    "sap_claims",
    metadata,
    sa.Column("order_id", sa.String(35), primary_key=True),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("lease_until", UtcDateTime(), nullable=False),
    sa.Column("claim_time", UtcDateTime(), nullable=False),
)

request_ids = request_ids_table(metadata)
REQUEST_IDS = RequestIds(request_ids)

outbox = outbox_table(metadata)
# The producer is "erp" (the proto package marque.erp.v1): its events go to marque.erp.*.
OUTBOX = Outbox(outbox, service="erp")
inbox = inbox_table(metadata)
INBOX = Inbox(inbox)
