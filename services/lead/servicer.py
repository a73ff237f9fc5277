"""LeadService over gRPC: proto in, engine call, proto out.

Transport only. Field shapes are checked by the mesh (protovalidate) before a method runs;
business rules live in `domain/`, transactions in `engine.py`, SQL in `store/`. What is
here is decoding requests into domain objects, encoding domain objects into protos, and
the AIP-158 paging conventions (page size defaults and opaque page tokens), which are API
conventions rather than rules of the lead business.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from marque.common.v1 import audit_pb2
from marque.lead.v1 import lead_pb2, lead_service_pb2, lead_service_pb2_grpc

from mesh.convert import EPOCH, EnumMap, datetime_of, timestamp
from mesh.errors import DomainError, InvalidArgument
from mesh.identity import Caller, Kind, current_caller
from mesh.paging import decode_token, filter_hash, page_size, split_page
from mesh.validation import validate, validates_stream
from services.lead.domain import errors
from services.lead.domain.listing import LeadFilter, ListQuery
from services.lead.domain.model import (
    Channel,
    Consents,
    Dealer,
    Grade,
    Lead,
    LeadInput,
    LeadStatus,
    TimeFrame,
    Touchpoint,
    payload_ref,
)
from services.lead.domain.visibility import View
from services.lead.engine import LeadEngine, Submitted
from services.lead.payloads import ImportRow, Payload, RawAdf

# Enum maps built once: the domain's names are the proto's without the prefix.
_CHANNELS = EnumMap(Channel, lead_pb2.Channel, "CHANNEL_")
_STATUSES = EnumMap(LeadStatus, lead_pb2.LeadStatus, "LEAD_STATUS_")
_GRADES = EnumMap(Grade, lead_pb2.LeadGrade, "LEAD_GRADE_")
_FRAMES = EnumMap(
    TimeFrame, lead_pb2.PurchaseTimeFrame, "PURCHASE_TIME_FRAME_", unspecified=TimeFrame.UNKNOWN
)
_OUTCOME_OUT = {
    "CREATED": lead_service_pb2.SUBMIT_OUTCOME_CREATED,
    "MERGED": lead_service_pb2.SUBMIT_OUTCOME_MERGED,
    "DUPLICATE": lead_service_pb2.SUBMIT_OUTCOME_DUPLICATE,
    "OTHER_DEALER": lead_service_pb2.SUBMIT_OUTCOME_OTHER_DEALER,
}


# ------------------------------------------------------------------------------ decoding


def _lead_input(
    msg: lead_service_pb2.LeadInput,
    channel: Channel,
    channel_lead_id: str,
    request_id: str,
) -> LeadInput:
    c, v, k = msg.customer, msg.vehicle, msg.consents
    return LeadInput(
        channel=channel,
        name=c.name,
        mobile=c.mobile,
        email=c.email,
        city=c.city,
        province=c.province,
        brand=v.brand,
        series=v.series,
        model=v.model,
        trim=v.trim,
        model_year=v.model_year,
        time_frame=_FRAMES.into[msg.time_frame],
        preferred_dealer_id=msg.preferred_dealer_id,
        consents=Consents(k.contact, k.marketing, k.share_with_dealer),
        test_drive_requested=msg.test_drive_requested,
        channel_lead_id=channel_lead_id,
        request_id=request_id,
    )


def _payload(request: Any, default_channel: Channel | None, caller: Caller) -> Payload:
    """The payload of a SubmitLeadRequest or an ImportLeadsRequest row.

    The channel: the request's; else the one a channel caller's token names; for raw_adf,
    ADF when unspecified; for structured rows, `default_channel` (BULK_IMPORT for imports;
    none for SubmitLead, where it is required of callers that are not a channel).
    """
    channel = _CHANNELS.of(request.channel) or _token_channel(caller)
    if request.WhichOneof("payload") == "raw_adf":
        return RawAdf(
            document=request.raw_adf,
            channel=channel,
            channel_lead_id=request.channel_lead_id,
            request_id=request.request_id,
        )
    channel = channel or default_channel
    if channel is None:
        raise InvalidArgument.for_field("channel", "required", reason=errors.CHANNEL_REQUIRED)
    return _lead_input(request.lead, channel, request.channel_lead_id, request.request_id)


def _token_channel(caller: Caller) -> Channel | None:
    """The channel a channel principal's token names (None for other callers, or a name
    that is no channel: the engine then refuses the mismatch)."""
    if caller.kind is not Kind.CHANNEL or not caller.channel:
        return None
    name = caller.channel.upper().removeprefix("CHANNEL_")
    return Channel(name) if name in Channel.__members__ else None


def _touchpoint_pb(tp: Touchpoint) -> lead_pb2.Touchpoint:
    return lead_pb2.Touchpoint(
        channel=_CHANNELS.to_proto(tp.channel),
        channel_lead_id=tp.channel_lead_id,
        time=timestamp(tp.time),
        payload_ref=tp.payload_ref,
        dealer_id=tp.dealer_id,
    )


def lead_pb(lead: Lead) -> lead_pb2.Lead:
    """The proto of a domain lead."""
    create, update = timestamp(lead.create_time), timestamp(lead.update_time)
    return lead_pb2.Lead(
        id=lead.id,
        status=_STATUSES.to_proto(lead.status),
        grade=_GRADES.to_proto(lead.rating.grade),
        score=lead.rating.score,
        rating_reasons=lead.rating.reasons,
        customer=lead_pb2.Customer(
            name=lead.name,
            mobile=lead.mobile_e164 or "",
            email=lead.email or "",
            city=lead.city,
            province=lead.province,
        ),
        vehicle=lead_pb2.VehicleInterest(
            brand=lead.brand,
            series=lead.series,
            model=lead.model,
            trim=lead.trim,
            model_year=lead.model_year,
        ),
        time_frame=_FRAMES.to_proto(lead.time_frame),
        test_drive_requested=lead.test_drive_requested,
        channel=_CHANNELS.to_proto(lead.channel),
        channel_lead_id=lead.channel_lead_id,
        consents=lead_pb2.Consents(
            contact=lead.consents.contact,
            marketing=lead.consents.marketing,
            share_with_dealer=lead.consents.share_with_dealer,
        ),
        preferred_dealer_id=lead.preferred_dealer_id or "",
        dealer_id=lead.dealer_id or "",
        routing_reason=lead.routing_reason,
        touchpoints=[_touchpoint_pb(t) for t in lead.touchpoints],
        follow_up_due_time=timestamp(lead.follow_up_due),
        lost_reason=lead.lost_reason,
        audit=audit_pb2.AuditInfo(
            create_time=create,
            create_actor=lead.create_actor,
            update_time=update,
            update_actor=lead.update_actor,
        ),
        create_time=create,
        update_time=update,
    )


def dealer_pb(dealer: Dealer) -> lead_pb2.Dealer:
    """The proto of a dealer."""
    return lead_pb2.Dealer(
        id=dealer.id,
        name=dealer.name,
        brands=dealer.brands,
        province=dealer.province,
        city=dealer.city,
        daily_capacity=dealer.daily_capacity,
        active=dealer.active,
        create_time=timestamp(dealer.create_time),
    )


# ------------------------------------------------------------------------------ paging


# ------------------------------------------------------------------------------ servicer


class LeadServicer(lead_service_pb2_grpc.LeadServiceServicer):
    """marque.lead.v1.LeadService."""

    def __init__(self, engine: LeadEngine) -> None:
        self.engine = engine
        # When ImportLeads asks the mesh to deliver invalid rows (so one bad row does not
        # fail the whole stream), each row's buf.validate rules are checked here instead.
        method = lead_service_pb2.DESCRIPTOR.services_by_name["LeadService"].methods_by_name[
            "ImportLeads"
        ]
        self._validate_rows = not validates_stream(method)

    async def SubmitLead(
        self, request: lead_service_pb2.SubmitLeadRequest, context: Any
    ) -> lead_service_pb2.SubmitLeadResponse:
        caller = current_caller()
        payload = _payload(request, None, caller)
        raw = request.raw_adf.encode() if isinstance(payload, RawAdf) else b""
        ref = payload_ref(raw or request.lead.SerializeToString(deterministic=True))
        result = await self.engine.submit(payload, caller, ref)
        return lead_service_pb2.SubmitLeadResponse(
            lead=_reply_lead(result), outcome=_OUTCOME_OUT[result.outcome.value]
        )

    async def ImportLeads(
        self, request_iterator: AsyncIterator[lead_service_pb2.ImportLeadsRequest], context: Any
    ) -> lead_service_pb2.ImportLeadsResponse:
        caller = current_caller()

        async def rows() -> AsyncIterator[ImportRow]:
            n = 0
            async for request in request_iterator:
                n += 1
                raw = (
                    request.raw_adf.encode()
                    if request.WhichOneof("payload") == "raw_adf"
                    else request.lead.SerializeToString(deterministic=True)
                )
                try:
                    if self._validate_rows:
                        validate(request)
                    yield n, _payload(request, Channel.BULK_IMPORT, caller), raw
                except DomainError as e:
                    yield n, e, raw

        summary = await self.engine.import_rows(rows(), caller)
        return lead_service_pb2.ImportLeadsResponse(
            received=summary.received,
            created=summary.created,
            merged=summary.merged,
            duplicates=summary.duplicates,
            rejected=summary.rejected,
            rejections=[
                lead_service_pb2.ImportRejection(row=row, field=r.field, reason=r.reason)
                for row, r in summary.rejections
            ],
            rejections_truncated=summary.rejections_truncated,
        )

    async def GetLead(
        self, request: lead_service_pb2.GetLeadRequest, context: Any
    ) -> lead_service_pb2.GetLeadResponse:
        lead = await self.engine.get_lead(request.id, current_caller())
        return lead_service_pb2.GetLeadResponse(lead=lead_pb(lead))

    async def ListLeads(
        self, request: lead_service_pb2.ListLeadsRequest, context: Any
    ) -> lead_service_pb2.ListLeadsResponse:
        caller = current_caller()
        size = page_size(request.page_size)
        flt = self.engine.scoped_filter(_lead_filter(request, self.engine.clock()), caller)
        fhash = filter_hash(
            "leads",
            flt.dealer_id,
            flt.unassigned_only,
            flt.grade,
            flt.status,
            flt.channel,
            flt.create_start,
            flt.create_end,
            request.overdue_only,
        )
        key = decode_token(request.page_token, fhash)
        after = None
        if key is not None:
            micros, _, lead_id = key.partition("|")
            try:
                after = (EPOCH + dt.timedelta(microseconds=int(micros)), lead_id)
            except ValueError:
                raise InvalidArgument.for_field("page_token", "not a valid page token") from None
        rows = await self.engine.list_leads(ListQuery(flt, after, size + 1))

        def sort_key(last: Lead) -> str:
            last_us = (last.create_time - EPOCH) // dt.timedelta(microseconds=1)
            return f"{last_us}|{last.id}"

        leads, next_token = split_page(rows, size, sort_key, fhash)
        return lead_service_pb2.ListLeadsResponse(
            leads=[lead_pb(x) for x in leads], next_page_token=next_token
        )

    async def UpdateLeadStatus(
        self, request: lead_service_pb2.UpdateLeadStatusRequest, context: Any
    ) -> lead_service_pb2.UpdateLeadStatusResponse:
        status = _STATUSES.of(request.status)
        if status is None:
            raise InvalidArgument.for_field("status", "required")
        lead = await self.engine.update_status(
            request.id, status, request.lost_reason, request.request_id, current_caller()
        )
        return lead_service_pb2.UpdateLeadStatusResponse(lead=lead_pb(lead))

    async def AssignLead(
        self, request: lead_service_pb2.AssignLeadRequest, context: Any
    ) -> lead_service_pb2.AssignLeadResponse:
        lead = await self.engine.assign(
            request.id, request.dealer_id, request.reason, request.request_id, current_caller()
        )
        return lead_service_pb2.AssignLeadResponse(lead=lead_pb(lead))

    async def CreateDealer(
        self, request: lead_service_pb2.CreateDealerRequest, context: Any
    ) -> lead_service_pb2.CreateDealerResponse:
        d = request.dealer
        dealer = Dealer(
            id=d.id,
            name=d.name.strip(),
            brands=tuple(b.strip() for b in d.brands),
            province=d.province.strip(),
            city=d.city.strip(),
            daily_capacity=d.daily_capacity,
            active=d.active,
        )
        created = await self.engine.create_dealer(dealer, request.request_id, current_caller())
        return lead_service_pb2.CreateDealerResponse(dealer=dealer_pb(created))

    async def ListDealers(
        self, request: lead_service_pb2.ListDealersRequest, context: Any
    ) -> lead_service_pb2.ListDealersResponse:
        size = page_size(request.page_size)
        fhash = filter_hash("dealers", request.brand, request.province, request.city)
        after = decode_token(request.page_token, fhash) or ""
        rows = await self.engine.list_dealers(
            after_id=after,
            limit=size + 1,
            brand=request.brand,
            province=request.province,
            city=request.city,
        )
        dealers, next_token = split_page(rows, size, lambda d: d.id, fhash)
        return lead_service_pb2.ListDealersResponse(
            dealers=[dealer_pb(d) for d in dealers], next_page_token=next_token
        )


def _reply_lead(result: Submitted) -> lead_pb2.Lead | None:
    """The lead of a submission's reply, as far as the caller may read it."""
    if result.view is View.FULL:
        return lead_pb(result.lead)
    if result.view is View.ID_ONLY:
        return lead_pb2.Lead(id=result.lead.id)
    return None


def _lead_filter(request: lead_service_pb2.ListLeadsRequest, now: dt.datetime) -> LeadFilter:
    """The request's filters as asked (the engine scopes them to the caller)."""
    dealer_id = request.dealer_id or None
    unassigned = request.unassigned_only and dealer_id is None
    grade = _GRADES.of(request.grade)
    status = _STATUSES.of(request.status)
    channel = _CHANNELS.of(request.channel)
    return LeadFilter(
        dealer_id=dealer_id,
        unassigned_only=unassigned,
        grade=grade.value if grade else None,
        status=status.value if status else None,
        channel=channel.value if channel else None,
        create_start=(
            datetime_of(request.create_time_start)
            if request.HasField("create_time_start")
            else None
        ),
        create_end=datetime_of(request.create_time_end)
        if request.HasField("create_time_end")
        else None,
        overdue_at=now if request.overdue_only else None,
    )
