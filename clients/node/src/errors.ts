/**
 * Marque's refusals, decoded: `MarqueError` with the `google.rpc.Status` details.
 *
 * A refused call carries a `google.rpc.Status` in the `grpc-status-details-bin` trailer: an
 * `ErrorInfo` always (`reason`, `domain`, `metadata`), a `BadRequest` naming the bad fields by
 * path, and a `RetryInfo` when retrying later may help. The promise clients of `connect()`
 * reject with a `MarqueError`; `decodeError(err)` turns the `ServiceError` of a plain grpc-js
 * client into one.
 */
import { Metadata, status as Code, type ServiceError, type StatusObject } from "@grpc/grpc-js";
import {
  BadRequest,
  DebugInfo,
  ErrorInfo,
  Help,
  LocalizedMessage,
  PreconditionFailure,
  QuotaFailure,
  RequestInfo,
  ResourceInfo,
  RetryInfo,
} from "./gen/google/rpc/error_details";
import { Status } from "./gen/google/rpc/status";

export const DETAILS_KEY = "grpc-status-details-bin";

/** The detail types of google/rpc/error_details.proto, by full name. */
const DETAIL_TYPES = {
  "google.rpc.ErrorInfo": ErrorInfo,
  "google.rpc.BadRequest": BadRequest,
  "google.rpc.RetryInfo": RetryInfo,
  "google.rpc.PreconditionFailure": PreconditionFailure,
  "google.rpc.QuotaFailure": QuotaFailure,
  "google.rpc.ResourceInfo": ResourceInfo,
  "google.rpc.RequestInfo": RequestInfo,
  "google.rpc.Help": Help,
  "google.rpc.LocalizedMessage": LocalizedMessage,
  "google.rpc.DebugInfo": DebugInfo,
} as const;

type DetailTypes = typeof DETAIL_TYPES;

/** One decoded detail: `{ type: "google.rpc.BadRequest", value: BadRequest }`, or the raw
 * bytes of a type this package does not know. */
export type Detail =
  | { [K in keyof DetailTypes]: { type: K; value: ReturnType<DetailTypes[K]["decode"]> } }[keyof DetailTypes]
  | { type: string; value: Uint8Array };

/** The name of a status code: `codeName(3) === "INVALID_ARGUMENT"`. */
export function codeName(code: number): string {
  return (Code as unknown as Record<number, string>)[code] ?? `CODE_${code}`;
}

export class MarqueError extends Error {
  /** The gRPC status code (`status.INVALID_ARGUMENT` of @grpc/grpc-js). */
  readonly code: Code;
  /** Its name, `"INVALID_ARGUMENT"`. */
  readonly codeName: string;
  /** `ErrorInfo.reason`, e.g. `"REQUEST_ID_REUSED"`; `""` without an ErrorInfo. */
  readonly reason: string;
  /** `ErrorInfo.domain`, e.g. `"marque.lead"`. */
  readonly domain: string;
  /** `ErrorInfo.metadata`. */
  readonly metadata: Readonly<Record<string, string>>;
  /** `BadRequest` field path -> description, in the server's order (two descriptions of one
   * path are joined with "; "). */
  readonly fieldViolations: Readonly<Record<string, string>>;
  /** `RetryInfo.retry_delay` in milliseconds, when the server says when to retry. */
  readonly retryDelayMs: number | undefined;
  /** Every detail, decoded. */
  readonly details: readonly Detail[];
  /** The trailing metadata of the call. */
  readonly trailers: Metadata;

  constructor(code: Code, message: string, trailers: Metadata = new Metadata(), options?: { cause?: unknown }) {
    super(message, options);
    this.name = "MarqueError";
    this.code = code;
    this.codeName = codeName(code);
    this.trailers = trailers;
    this.details = decodeDetails(trailers);
    const info = this.detail("google.rpc.ErrorInfo");
    this.reason = info?.reason ?? "";
    this.domain = info?.domain ?? "";
    this.metadata = { ...(info?.metadata ?? {}) };
    const violations: Record<string, string> = {};
    for (const d of this.details) {
      if (d.type !== "google.rpc.BadRequest") continue;
      for (const v of (d.value as BadRequest).fieldViolations) {
        const known = violations[v.field];
        violations[v.field] = known ? `${known}; ${v.description}` : v.description;
      }
    }
    this.fieldViolations = violations;
    const delay = this.detail("google.rpc.RetryInfo")?.retryDelay;
    this.retryDelayMs = delay ? delay.seconds * 1000 + delay.nanos / 1e6 : undefined;
  }

  /** The first detail of a type: `err.detail("google.rpc.ErrorInfo")?.reason`. */
  detail<K extends keyof DetailTypes>(type: K): ReturnType<DetailTypes[K]["decode"]> | undefined {
    const found = this.details.find((d) => d.type === type);
    return found?.value as ReturnType<DetailTypes[K]["decode"]> | undefined;
  }

  override toString(): string {
    const parts = [`${this.name}: ${this.codeName}: ${this.message}`];
    if (this.reason) parts.push(`reason=${this.reason}`);
    const fields = Object.entries(this.fieldViolations);
    if (fields.length) parts.push(`fields=${fields.map(([f, d]) => `${f}: ${d}`).join(", ")}`);
    return parts.join(" ");
  }
}

function decodeDetails(trailers: Metadata): Detail[] {
  const raw = trailers.get(DETAILS_KEY)[0];
  if (!raw || typeof raw === "string") return [];
  let status: Status;
  try {
    status = Status.decode(raw);
  } catch {
    return [];
  }
  return status.details.map((any): Detail => {
    const type = any.typeUrl.slice(any.typeUrl.lastIndexOf("/") + 1);
    const fns = (DETAIL_TYPES as Record<string, { decode(b: Uint8Array): unknown }>)[type];
    if (fns) {
      try {
        return { type, value: fns.decode(any.value) } as Detail;
      } catch {
        // undecodable: keep the bytes
      }
    }
    return { type, value: any.value };
  });
}

function isStatus(err: unknown): err is Partial<StatusObject> & { code: number } {
  return typeof err === "object" && err !== null && typeof (err as { code?: unknown }).code === "number";
}

/** `err` as a MarqueError when it is a gRPC error (a grpc-js `ServiceError` or status);
 * anything else is returned unchanged. */
export function decodeError(err: ServiceError | unknown): MarqueError | unknown {
  if (err instanceof MarqueError || !isStatus(err)) return err;
  const metadata = err.metadata instanceof Metadata ? err.metadata : new Metadata();
  const message = typeof err.details === "string" ? err.details : String((err as { message?: unknown }).message ?? "");
  return new MarqueError(err.code as Code, message, metadata, { cause: err });
}

export function isMarqueError(err: unknown): err is MarqueError {
  return err instanceof MarqueError;
}
