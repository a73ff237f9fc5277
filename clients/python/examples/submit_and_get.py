import asyncio
import os

from marque.client import MarqueError, Token, connect
from marque.lead.v1 import lead_pb2, lead_service_pb2, lead_service_pb2_grpc


async def submit_and_get(target: str, token: Token) -> lead_pb2.Lead:
    # secure=True for TLS; `token` may also be a callable returning the current token.
    async with connect(target, token) as channel:
        leads = lead_service_pb2_grpc.LeadServiceStub(channel)
        try:
            submitted = await leads.SubmitLead(
                lead_service_pb2.SubmitLeadRequest(
                    request_id="mp-order-1001",  # a retry with the same id returns the same lead
                    channel=lead_pb2.CHANNEL_BRAND_SITE,
                    lead=lead_service_pb2.LeadInput(
                        customer=lead_pb2.Customer(
                            name="Li Wei", mobile="138 0013 8000", city="Shanghai"
                        ),
                        vehicle=lead_pb2.VehicleInterest(brand="Marque", series="M5"),
                        time_frame=lead_pb2.PURCHASE_TIME_FRAME_WITHIN_15_DAYS,
                        consents=lead_pb2.Consents(contact=True, share_with_dealer=True),
                    ),
                ),
                timeout=5,
            )
            reply = await leads.GetLead(
                lead_service_pb2.GetLeadRequest(id=submitted.lead.id), timeout=5
            )
        except MarqueError as e:
            # e.g. INVALID_ARGUMENT REQUEST_ID_REUSED {}, or {"lead.customer.mobile": "..."}
            print(e.code().name, e.reason, e.field_violations)
            raise
        lead = reply.lead
        print(lead.id, lead.customer.mobile, lead.dealer_id, lead.routing_reason)
        return lead


if __name__ == "__main__":
    asyncio.run(
        submit_and_get(
            os.environ.get("MARQUE_LEAD_ADDR", "127.0.0.1:50051"), os.environ["MARQUE_TOKEN"]
        )
    )
