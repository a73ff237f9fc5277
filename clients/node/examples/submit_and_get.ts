import { connect, MarqueError, type Token } from "@marque/clients";
import { Channel, PurchaseTimeFrame, type Lead } from "@marque/clients/marque/lead/v1/lead";
import { LeadServiceDefinition } from "@marque/clients/marque/lead/v1/lead_service";

export async function submitAndGet(target: string, token: Token): Promise<Lead> {
  // secure: true for TLS; `token` may also be a function returning the current token.
  const marque = connect(target, { token });
  const leads = marque.service(LeadServiceDefinition);
  try {
    const submitted = await leads.submitLead(
      {
        requestId: "mp-order-1001", // a retry with the same id returns the same lead
        channel: Channel.CHANNEL_BRAND_SITE,
        lead: {
          customer: { name: "Li Wei", mobile: "138 0013 8000", city: "Shanghai" },
          vehicle: { brand: "Marque", series: "M5" },
          timeFrame: PurchaseTimeFrame.PURCHASE_TIME_FRAME_WITHIN_15_DAYS,
          consents: { contact: true, shareWithDealer: true },
        },
      },
      { timeoutMs: 5000 },
    );
    const { lead } = await leads.getLead({ id: submitted.lead!.id }, { timeoutMs: 5000 });
    console.log(lead!.id, lead!.customer!.mobile, lead!.dealerId, lead!.routingReason);
    return lead!;
  } catch (err) {
    if (err instanceof MarqueError) {
      // e.g. INVALID_ARGUMENT REQUEST_ID_REUSED {}, or {"lead.customer.mobile": "..."}
      console.error(err.codeName, err.reason, err.fieldViolations);
    }
    throw err;
  } finally {
    marque.close();
  }
}

if (require.main === module) {
  submitAndGet(process.env.MARQUE_LEAD_ADDR ?? "127.0.0.1:50051", process.env.MARQUE_TOKEN ?? "").catch(
    () => (process.exitCode = 1),
  );
}
