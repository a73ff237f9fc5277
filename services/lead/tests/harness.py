"""The lead servicer tests' harness: a real in-process server (mesh.server.start) on the
`database_url` back end, dealers registered, tokens minted per principal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
import sqlalchemy as sa
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status
from marque.lead.v1 import lead_pb2, lead_service_pb2, lead_service_pb2_grpc
from prometheus_client import REGISTRY

from mesh.config import Settings
from mesh.db import Database
from mesh.identity import Caller, Kind
from mesh.keys import mint_token
from mesh.server import start
from services.lead.app import build_spec
from services.lead.domain.config import LeadConfig

ADF_DIR = Path(__file__).resolve().parents[4] / "shared" / "data" / "adf"
# (file name, document), read at collection so the async tests do no blocking file I/O.
ADF_SAMPLES = (
    [(p.name, p.read_text()) for p in sorted(ADF_DIR.glob("*.xml"))] if ADF_DIR.is_dir() else []
)

OEM = Caller(Kind.OEM, "staff-1")
SERVICE = Caller(Kind.SERVICE, "test", service="test")
DEALERS = [
    lead_pb2.Dealer(
        id="SH1",
        name="Shanghai One",
        brands=["Marque"],
        province="Shanghai",
        city="Shanghai",
        daily_capacity=100,
        active=True,
    ),
    lead_pb2.Dealer(
        id="SH2",
        name="Shanghai Two",
        brands=["Marque"],
        province="Shanghai",
        city="Shanghai",
        daily_capacity=100,
        active=True,
    ),
    lead_pb2.Dealer(
        id="BJ1",
        name="Beijing Closed",
        brands=["Marque"],
        province="Beijing",
        city="Beijing",
        daily_capacity=100,
        active=False,
    ),
]


def md(caller: Caller) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {mint_token(caller)}"),)


def channel_caller(channel: str) -> Caller:
    return Caller(Kind.CHANNEL, f"{channel.lower()}-integration", channel=channel)


def dealer_caller(dealer_id: str) -> Caller:
    return Caller(Kind.DEALER, f"{dealer_id}-staff", dealer_id=dealer_id)


def lead_input(mobile: str = "13800138000", **kw: object) -> lead_service_pb2.LeadInput:
    msg = lead_service_pb2.LeadInput(
        customer=lead_pb2.Customer(
            name="Han Meimei", mobile=mobile, city="Shanghai", province="Shanghai"
        ),
        vehicle=lead_pb2.VehicleInterest(brand="Marque", series="M5", model="M5 Long Range"),
        time_frame=lead_pb2.PURCHASE_TIME_FRAME_WITHIN_15_DAYS,
        consents=lead_pb2.Consents(contact=True, share_with_dealer=True),
    )
    for k, v in kw.items():
        setattr(msg, k, v)
    return msg


def submit_request(
    mobile: str = "13800138000",
    *,
    channel: int = lead_pb2.CHANNEL_BRAND_SITE,
    request_id: str = "",
    channel_lead_id: str = "",
    **kw: object,
) -> lead_service_pb2.SubmitLeadRequest:
    return lead_service_pb2.SubmitLeadRequest(
        lead=lead_input(mobile, **kw),
        channel=cast(lead_pb2.Channel, channel),
        request_id=request_id or f"req-{mobile}-{channel}-{channel_lead_id}",
        channel_lead_id=channel_lead_id,
    )


@dataclass
class Harness:
    stub: lead_service_pb2_grpc.LeadServiceStub
    db: Database

    async def count(self, table: sa.Table) -> int:
        async with self.db.engine.connect() as conn:
            q = sa.select(sa.func.count()).select_from(table)
            return int((await conn.execute(q)).scalar_one())

    async def submit(
        self, req: lead_service_pb2.SubmitLeadRequest, caller: Caller = SERVICE
    ) -> lead_service_pb2.SubmitLeadResponse:
        return await self.stub.SubmitLead(req, metadata=md(caller))


@asynccontextmanager
async def serve(
    database_url: str,
    config: LeadConfig | None = None,
    import_seconds: float | None = None,
    **settings_kw: Any,
) -> AsyncIterator[Harness]:
    settings = Settings(
        service="lead", grpc_port=0, metrics_port=0, database_url=database_url, **settings_kw
    )
    spec = build_spec(seed=False, config=config, events=False, import_seconds=import_seconds)
    running = await start(spec, settings)
    db = Database(database_url)
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            stub = lead_service_pb2_grpc.LeadServiceStub(ch)
            for i, d in enumerate(DEALERS):
                await stub.CreateDealer(
                    lead_service_pb2.CreateDealerRequest(dealer=d, request_id=f"dealer-{i}"),
                    metadata=md(OEM),
                )
            yield Harness(stub, db)
    finally:
        await db.dispose()
        await running.stop(1.0)


def violations(err: grpc.aio.AioRpcError) -> dict[str, str]:
    """The BadRequest field violations of a failed call, field -> description."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, "no google.rpc.Status details"
    out: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            out.update({v.field: v.description for v in br.field_violations})
    return out


def sample(channel: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "marque_leads_submitted_total", {"channel": channel, "outcome": outcome}
    )
    return value or 0.0
