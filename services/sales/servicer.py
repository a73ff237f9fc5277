"""SalesService over gRPC: proto in, engine call, proto out.

Transport only. Field shapes are checked by the mesh (protovalidate, the proto's
`buf.validate` rules) before a method runs; who may see what and which transaction does
what are decided in the engine (`engine.py` and its parts), the rules live in `domain/`,
SQL in `store/`. Errors are `mesh.errors` (reasons in `domain/errors.py`), which the mesh's
chain maps to statuses: nothing here builds a status or calls `context.abort`.
Test drives and orders: `servicer_deals.py`, mixed in here.
"""

from __future__ import annotations

from typing import Any

from marque.sales.v1 import sales_service_pb2 as pb
from marque.sales.v1 import sales_service_pb2_grpc

from mesh.convert import datetime_of
from mesh.identity import current_caller
from mesh.paging import decode_token, filter_hash, page_size, split_page
from services.sales import convert, convert_quotes, schedule_wire
from services.sales.engine import SalesEngine
from services.sales.servicer_deals import DealsServicer
from services.sales.store.keyset import key_of


class SalesServicer(DealsServicer, sales_service_pb2_grpc.SalesServiceServicer):
    """marque.sales.v1.SalesService."""

    def __init__(self, engine: SalesEngine) -> None:
        self.engine = engine

    # ------------------------------------------------------------------ opportunities

    async def GetOpportunity(self, request: pb.GetOpportunityRequest, context: Any) -> Any:
        opp = await self.engine.get_opportunity(request.opportunity_id, caller=current_caller())
        return pb.GetOpportunityResponse(opportunity=convert.opportunity_pb(opp))

    async def ListOpportunities(self, request: pb.ListOpportunitiesRequest, context: Any) -> Any:
        size = page_size(request.page_size)
        stage = convert.STAGES.of(request.stage)
        fhash = filter_hash("opportunities", request.dealer_id, request.stage, request.overdue_only)
        after = decode_token(request.page_token, fhash)
        rows = await self.engine.list_opportunities(
            request.dealer_id,
            stage,
            request.overdue_only,
            after,
            size + 1,
            caller=current_caller(),
        )
        page, token = split_page(rows, size, lambda o: key_of(o.create_time, o.id), fhash)
        return pb.ListOpportunitiesResponse(
            opportunities=[convert.opportunity_pb(o) for o in page], next_page_token=token
        )

    async def LogFollowUp(self, request: pb.LogFollowUpRequest, context: Any) -> Any:
        f = request.follow_up
        channel = convert.CHANNELS.of(f.channel)
        assert channel is not None  # the proto refuses UNSPECIFIED
        due = datetime_of(f.next_action_due) if f.HasField("next_action_due") else None
        follow_up, opp = await self.engine.log_follow_up(
            request.opportunity_id,
            channel,
            f.outcome,
            f.next_action,
            due,
            request_id=request.request_id,
            caller=current_caller(),
        )
        return pb.LogFollowUpResponse(
            follow_up=convert.follow_up_pb(follow_up), opportunity=convert.opportunity_pb(opp)
        )

    async def ListFollowUps(self, request: pb.ListFollowUpsRequest, context: Any) -> Any:
        size = page_size(request.page_size)
        fhash = filter_hash("follow_ups", request.opportunity_id)
        after = decode_token(request.page_token, fhash)
        rows = await self.engine.list_follow_ups(
            request.opportunity_id, after, size + 1, caller=current_caller()
        )
        page, token = split_page(rows, size, lambda f: key_of(f.time, f.id), fhash)
        return pb.ListFollowUpsResponse(
            follow_ups=[convert.follow_up_pb(f) for f in page], next_page_token=token
        )

    async def MarkOpportunityLost(
        self, request: pb.MarkOpportunityLostRequest, context: Any
    ) -> Any:
        opp = await self.engine.mark_lost(
            request.opportunity_id, request.reason, caller=current_caller()
        )
        return pb.MarkOpportunityLostResponse(opportunity=convert.opportunity_pb(opp))

    # ------------------------------------------------------------------ price book, quotes

    async def PutTrim(self, request: pb.PutTrimRequest, context: Any) -> Any:
        trim = await self.engine.put_trim(convert.trim_of(request.trim), caller=current_caller())
        return pb.PutTrimResponse(trim=convert.trim_pb(trim))

    async def ListTrims(self, request: pb.ListTrimsRequest, context: Any) -> Any:
        day = convert.day("date", request.date) if request.date else None
        trims = self.engine.list_trims(day, request.model_code)
        return pb.ListTrimsResponse(trims=[convert.trim_pb(t) for t in trims])

    async def CalculateQuote(self, request: pb.CalculateQuoteRequest, context: Any) -> Any:
        spec = convert_quotes.spec_of(request.quote, self.engine.today())
        priced = self.engine.calculate(spec)
        return schedule_wire.calculate_reply(priced)  # the reply's bytes (mesh/server.py)

    async def CreateQuote(self, request: pb.CreateQuoteRequest, context: Any) -> Any:
        spec = convert_quotes.spec_of(request.quote, self.engine.today())
        until = convert.day("valid_until", request.valid_until) if request.valid_until else None
        quote = await self.engine.create_quote(
            request.opportunity_id,
            spec,
            request.member_id,
            until,
            request_id=request.request_id,
            caller=current_caller(),
        )
        return pb.CreateQuoteResponse(quote=convert_quotes.quote_pb(quote))

    async def GetQuote(self, request: pb.GetQuoteRequest, context: Any) -> Any:
        quote = await self.engine.get_quote(request.quote_id, caller=current_caller())
        return pb.GetQuoteResponse(quote=convert_quotes.quote_pb(quote))
