// The helper against a grpc-js TestingService in this process: tokens, deadlines, retries,
// streams, cancellation and error details, without the platform.
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";

import * as grpc from "@grpc/grpc-js";
import { connect, MarqueError, SERVICE_CONFIG, status } from "@marque/clients";
import { Any } from "@marque/clients/google/protobuf/any";
import { BadRequest, ErrorInfo, RetryInfo } from "@marque/clients/google/rpc/error_details";
import { Status } from "@marque/clients/google/rpc/status";
import {
  TestingServiceDefinition,
  TestingServiceService,
  type TestingServiceServer,
} from "@marque/clients/marque/testing/v1/testing_service";

function richError(): Partial<grpc.StatusObject> {
  const pack = (typeUrl: string, value: Uint8Array): Any => ({ typeUrl: `type.googleapis.com/${typeUrl}`, value: Buffer.from(value) });
  const details = Status.encode({
    code: status.INVALID_ARGUMENT,
    message: "customer.mobile: is not a mobile number",
    details: [
      pack("google.rpc.ErrorInfo", ErrorInfo.encode({ reason: "INVALID_MOBILE", domain: "marque.lead", metadata: { region: "CN" } }).finish()),
      pack(
        "google.rpc.BadRequest",
        BadRequest.encode({
          fieldViolations: [
            { field: "lead.customer.mobile", description: "is not a mobile number", reason: "", localizedMessage: undefined },
            { field: "lead.customer.mobile", description: "is too short", reason: "", localizedMessage: undefined },
            { field: "request_id", description: "is required", reason: "", localizedMessage: undefined },
          ],
        }).finish(),
      ),
      pack("google.rpc.RetryInfo", RetryInfo.encode({ retryDelay: { seconds: 1, nanos: 500_000_000 } }).finish()),
      pack("example.Unknown", new Uint8Array([1, 2, 3])),
    ],
  }).finish();
  const metadata = new grpc.Metadata();
  metadata.set("grpc-status-details-bin", Buffer.from(details));
  return { code: status.INVALID_ARGUMENT, details: "customer.mobile: is not a mobile number", metadata };
}

describe("the helper", () => {
  const seen: (string | undefined)[] = [];
  let failFirst = 0;
  let server: grpc.Server;
  let target: string;

  const impl: TestingServiceServer = {
    echo(call, callback) {
      seen.push(call.metadata.get("authorization")[0] as string | undefined);
      if (failFirst > 0) {
        failFirst -= 1;
        return callback({ code: status.UNAVAILABLE, details: "restarting" });
      }
      if (call.request.failWith === "rich") return callback(richError());
      callback(null, { message: call.request.message, caller: "", traceId: "" });
    },
    adminEcho(_call, callback) {
      callback({ code: status.UNIMPLEMENTED });
    },
    relay(_call, callback) {
      callback({ code: status.UNIMPLEMENTED });
    },
    sleep(call, callback) {
      const timer = setTimeout(() => callback(null, { sleptMillis: call.request.millis }), call.request.millis);
      call.on("cancelled", () => clearTimeout(timer));
    },
    streamEcho(call) {
      seen.push(call.metadata.get("authorization")[0] as string | undefined);
      for (let index = 0; index < call.request.count; index++) call.write({ message: call.request.message, index });
      if (call.request.message === "fail") call.emit("error", richError());
      else call.end();
    },
    countEchoes(call, callback) {
      let count = 0;
      call.on("data", () => (count += 1));
      call.on("end", () => callback(null, { count }));
    },
    tallyEchoes(_call, callback) {
      callback({ code: status.UNIMPLEMENTED });
    },
  };

  before(async () => {
    server = new grpc.Server();
    server.addService(TestingServiceService, impl);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    target = `127.0.0.1:${port}`;
  });

  after(() => {
    server.forceShutdown();
  });

  beforeEach(() => {
    seen.length = 0;
    failFirst = 0;
  });

  test("sends the token on every call kind, a function's current one, and a call's own", async () => {
    const tokens = ["t1", "t2"];
    const marque = connect(target, { token: () => tokens.shift() ?? "t-last" });
    try {
      const testing = marque.service(TestingServiceDefinition);
      await testing.echo({ message: "a" });
      await testing.echo({ message: "b" });
      await testing.echo({ message: "c" }, { token: "end-user" });
      for await (const _ of testing.streamEcho({ message: "s", count: 1 })) {
        // read it all
      }
      assert.deepEqual(seen, ["Bearer t1", "Bearer t2", "Bearer end-user", "Bearer t-last"]);
    } finally {
      marque.close();
    }
  });

  test("waits for a token promise; a failing token function fails the call", async () => {
    const good = connect(target, { token: () => new Promise((r) => setTimeout(() => r("later"), 20)) });
    const bad = connect(target, {
      token: () => {
        throw new Error("vault is down");
      },
    });
    try {
      await good.service(TestingServiceDefinition).echo({ message: "a" });
      assert.deepEqual(seen, ["Bearer later"]);
      const err = await bad.service(TestingServiceDefinition).echo({ message: "a" }).catch((e: unknown) => e);
      assert.ok(err instanceof MarqueError);
      assert.equal(err.code, status.UNAUTHENTICATED);
      assert.match(err.message, /vault is down/);
    } finally {
      good.close();
      bad.close();
    }
  });

  test("retries UNAVAILABLE as the Python helper does", async () => {
    assert.equal(SERVICE_CONFIG.methodConfig[0].retryPolicy.maxAttempts, 4);
    const marque = connect(target, { token: "t" });
    try {
      failFirst = 3;
      const reply = await marque.service(TestingServiceDefinition).echo({ message: "ok" });
      assert.equal(reply.message, "ok");
      assert.equal(seen.length, 4);
      failFirst = 4; // one more than the attempts: the caller sees UNAVAILABLE
      const err = await marque.service(TestingServiceDefinition).echo({ message: "no" }).catch((e: unknown) => e);
      assert.ok(err instanceof MarqueError);
      assert.equal(err.code, status.UNAVAILABLE);
    } finally {
      marque.close();
    }
  });

  test("deadlines: the connection's default, a call's own, none for streams", async () => {
    const marque = connect(target, { timeoutMs: 100 });
    try {
      const testing = marque.service(TestingServiceDefinition);
      const late = await testing.sleep({ millis: 1000 }).catch((e: unknown) => e);
      assert.ok(late instanceof MarqueError);
      assert.equal(late.code, status.DEADLINE_EXCEEDED);
      assert.equal((await testing.sleep({ millis: 200 }, { timeoutMs: 2000 })).sleptMillis, 200);
      const absolute = await testing.sleep({ millis: 1000 }, { deadline: Date.now() + 50 }).catch((e: unknown) => e);
      assert.equal((absolute as MarqueError).code, status.DEADLINE_EXCEEDED);
    } finally {
      marque.close();
    }
  });

  test("an abort signal cancels the call", async () => {
    const marque = connect(target);
    try {
      const abort = new AbortController();
      const pending = marque.service(TestingServiceDefinition).sleep({ millis: 5000 }, { signal: abort.signal });
      setTimeout(() => abort.abort(), 20);
      const err = await pending.catch((e: unknown) => e);
      assert.equal((err as MarqueError).code, status.CANCELLED);
    } finally {
      marque.close();
    }
  });

  test("decodes ErrorInfo, BadRequest and RetryInfo", async () => {
    const marque = connect(target);
    try {
      const err = await marque.service(TestingServiceDefinition).echo({ message: "x", failWith: "rich" }).catch((e: unknown) => e);
      assert.ok(err instanceof MarqueError);
      assert.equal(err.code, status.INVALID_ARGUMENT);
      assert.equal(err.message, "customer.mobile: is not a mobile number");
      assert.equal(err.reason, "INVALID_MOBILE");
      assert.equal(err.domain, "marque.lead");
      assert.deepEqual(err.metadata, { region: "CN" });
      assert.deepEqual(err.fieldViolations, {
        "lead.customer.mobile": "is not a mobile number; is too short",
        request_id: "is required",
      });
      assert.equal(err.retryDelayMs, 1500);
      assert.equal(err.detail("google.rpc.ErrorInfo")?.reason, "INVALID_MOBILE");
      assert.deepEqual(err.details.at(-1), { type: "example.Unknown", value: Buffer.from([1, 2, 3]) });
    } finally {
      marque.close();
    }
  });

  test("streams: server streams are async iterables, client streams take any iterable", async () => {
    const marque = connect(target);
    try {
      const testing = marque.service(TestingServiceDefinition);
      const got: number[] = [];
      for await (const reply of testing.streamEcho({ message: "m", count: 3 })) got.push(reply.index);
      assert.deepEqual(got, [0, 1, 2]);
      async function* rows() {
        for (let i = 0; i < 50; i++) yield { message: `row ${i}` };
      }
      assert.equal((await testing.countEchoes(rows())).count, 50);
      assert.equal((await testing.countEchoes([{ message: "a" }, { message: "b" }])).count, 2);
      const failing: number[] = [];
      const err = await (async () => {
        for await (const reply of testing.streamEcho({ message: "fail", count: 2 })) failing.push(reply.index);
      })().catch((e: unknown) => e);
      assert.ok(err instanceof MarqueError, String(err));
      assert.equal(err.reason, "INVALID_MOBILE");
    } finally {
      marque.close();
    }
  });
});
