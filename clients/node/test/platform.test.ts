// The Node client against a real lead and member service (test/harness.ts).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { connect, decodeError, MarqueError, status } from "@marque/clients";
import { LeadGrade } from "@marque/clients/marque/lead/v1/lead";
import { LeadServiceClient, LeadServiceDefinition } from "@marque/clients/marque/lead/v1/lead_service";
import { IdentityType } from "@marque/clients/marque/member/v1/member";
import { MemberServiceDefinition } from "@marque/clients/marque/member/v1/member_service";

import { submitAndGet } from "../examples/submit_and_get";
import { startPlatform, type Platform } from "./harness";

describe("against lead and member", () => {
  let platform: Platform;

  before(async () => {
    platform = await startPlatform();
  });

  after(async () => {
    await platform?.stop();
  });

  test("the README example submits a lead and reads it back", async () => {
    const lead = await submitAndGet(platform.lead, platform.tokens.service);
    assert.match(lead.id, /^L/);
    assert.equal(lead.customer?.mobile, "+8613800138000"); // cleansed to E.164
    assert.equal(lead.dealerId, "D-SH-01"); // routed to the Shanghai dealer
    assert.notEqual(lead.grade, LeadGrade.LEAD_GRADE_UNSPECIFIED);
    assert.ok(lead.createTime instanceof Date);
    // Sent again: the same lead (the request id makes the retry safe).
    const again = await submitAndGet(platform.lead, () => platform.tokens.service);
    assert.equal(again.id, lead.id);
  });

  test("registers a member and earns points", async () => {
    const marque = connect(platform.member, { token: async () => platform.tokens.service });
    try {
      const members = marque.service(MemberServiceDefinition);
      const registered = await members.registerMember({
        requestId: "node-reg-1",
        identity: { type: IdentityType.IDENTITY_TYPE_MOBILE, value: "139 1234 5678" },
        displayName: "Wang Fang",
        city: "Shanghai",
      });
      assert.equal(registered.created, true);
      const id = registered.member!.id;
      assert.match(id, /^m_[0-9a-f]{20}$/);
      const earned = await members.earnPoints(
        { memberId: id, points: 1200, reason: "vehicle purchase", sourceRef: "order-9", requestId: "node-earn-1" },
        { timeoutMs: 5000 },
      );
      assert.equal(earned.member!.pointsBalance, 1200);
      assert.equal(earned.transaction!.points, 1200);
      const read = await members.getMember({ memberId: id });
      assert.equal(read.member!.pointsBalance, 1200);
      assert.equal(read.member!.displayName, "Wang Fang");
    } finally {
      marque.close();
    }
  });

  test("a bad request's field violations are decoded", async () => {
    const marque = connect(platform.lead, { token: platform.tokens.service });
    try {
      const leads = marque.service(LeadServiceDefinition);
      const err = await leads.submitLead({ lead: { customer: { name: "Li" } } }).then(
        () => assert.fail("an invalid lead was accepted"),
        (e: unknown) => e,
      );
      assert.ok(err instanceof MarqueError, String(err));
      assert.equal(err.code, status.INVALID_ARGUMENT);
      assert.equal(err.codeName, "INVALID_ARGUMENT");
      assert.equal(err.domain, "marque.lead");
      assert.ok(err.reason, "an ErrorInfo reason");
      assert.ok(err.fieldViolations["request_id"], JSON.stringify(err.fieldViolations));
      assert.ok(err.fieldViolations["lead.vehicle"], JSON.stringify(err.fieldViolations));
      assert.match(err.toString(), /INVALID_ARGUMENT.*request_id/);
    } finally {
      marque.close();
    }
  });

  test("a business rule's reason is decoded", async () => {
    const marque = connect(platform.lead, { token: platform.tokens.service });
    try {
      const leads = marque.service(LeadServiceDefinition);
      const err = await leads.getLead({ id: "L-does-not-exist" }).then(
        () => assert.fail("found a lead that does not exist"),
        (e: unknown) => e,
      );
      assert.ok(err instanceof MarqueError);
      assert.equal(err.code, status.NOT_FOUND);
      assert.equal(err.domain, "marque.lead");
      assert.ok(err.reason);
    } finally {
      marque.close();
    }
  });

  test("per-call tokens: one connection for many callers", async () => {
    const marque = connect(platform.lead); // no connection token
    try {
      const leads = marque.service(LeadServiceDefinition);
      const anonymous = await leads.listDealers({}).then(
        () => assert.fail("an anonymous caller listed dealers"),
        (e: unknown) => e as MarqueError,
      );
      assert.equal(anonymous.code, status.UNAUTHENTICATED);
      const listed = await leads.listDealers({ city: "Shanghai" }, { token: platform.tokens.oem });
      assert.deepEqual(listed.dealers.map((d) => d.id).sort(), ["D-SH-01", "D-SH-02"]);
    } finally {
      marque.close();
    }
  });

  test("the plain grpc-js client shares the connection; decodeError decodes its errors", async () => {
    const marque = connect(platform.lead, { token: platform.tokens.channel });
    try {
      const client = marque.client(LeadServiceClient);
      const err = await new Promise<unknown>((resolve) =>
        client.getLead({ id: "L-any" }, (e) => resolve(e)),
      );
      const decoded = decodeError(err);
      assert.ok(decoded instanceof MarqueError);
      assert.equal(decoded.code, status.PERMISSION_DENIED); // a channel may not read leads
      assert.equal(decoded.domain, "marque.lead");
    } finally {
      marque.close();
    }
  });
});
