/**
 * A thin, typed helper over @grpc/grpc-js for backends outside the platform (mobile-app and
 * mini-program BFFs): the same behaviour as the Python helper (`marque.client`).
 *
 * ```ts
 * const marque = connect("marque.example.com:443", { token, secure: true });
 * const leads = marque.service(LeadServiceDefinition);
 * const { lead } = await leads.getLead({ id }, { timeoutMs: 5000 });
 * ```
 *
 * The connection
 * - carries the bearer token on every call (`token` may be a function returning the current
 *   token, or a promise of it, so a backend can rotate tokens without reconnecting; a call's
 *   own `{ token }` wins, for one connection serving several end users);
 * - gives unary and client-streaming calls a deadline (`timeoutMs`, 10 s) unless the call
 *   sets its own (`{ timeoutMs }` or `{ deadline }`);
 * - retries UNAVAILABLE with exponential backoff through gRPC's own retry policy (safe because
 *   every mutating Marque call carries a `request_id`), with retry throttling, balances
 *   round_robin over all addresses of a `dns:///` name and keeps the connection alive;
 * - rejects with `MarqueError` (decoded `ErrorInfo`, `BadRequest`, `RetryInfo`).
 *
 * Requests are given as plain objects: missing fields take their proto defaults.
 */
import { once } from "node:events";
import * as grpc from "@grpc/grpc-js";
import type { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { decodeError } from "./errors";

/** A JWT, or a function returning the current one (or a promise of it). */
export type Token = string | (() => string | Promise<string>);

/** Milliseconds: the deadline of unary and client-streaming calls that set none (as the mesh's
 * MARQUE_CLIENT_TIMEOUT). Server streams are watches and get none. */
export const DEFAULT_TIMEOUT_MS = 10_000;

/** The service config every connection uses; the Python helper's SERVICE_CONFIG. */
export const SERVICE_CONFIG = {
  loadBalancingConfig: [{ round_robin: {} }],
  methodConfig: [
    {
      name: [{}],
      retryPolicy: {
        maxAttempts: 4,
        initialBackoff: "0.1s",
        maxBackoff: "2s",
        backoffMultiplier: 2,
        retryableStatusCodes: ["UNAVAILABLE"],
      },
    },
  ],
  // Stop retrying when most recent calls fail, so an outage is not multiplied by 4.
  retryThrottling: { maxTokens: 10, tokenRatio: 0.1 },
};

export interface ConnectOptions {
  /** Sent as `authorization: Bearer <token>` on every call that carries none of its own. */
  token?: Token;
  /** TLS with the system roots (or `rootCerts`); plaintext otherwise (local development, or a
   * sidecar that does TLS). */
  secure?: boolean;
  rootCerts?: Buffer;
  /** Deadline of unary and client-streaming calls that set none; `null` for none. */
  timeoutMs?: number | null;
  /** Extra grpc-js channel options, applied over the defaults. */
  channelOptions?: grpc.ChannelOptions;
}

export interface CallOptions {
  /** This call's deadline, from now. */
  timeoutMs?: number;
  /** Or an absolute deadline. */
  deadline?: Date | number;
  /** This call's bearer token, instead of the connection's. */
  token?: string;
  /** More request metadata. */
  metadata?: grpc.Metadata | Record<string, string>;
  /** Cancels the call (it then rejects with CANCELLED). */
  signal?: AbortSignal;
}

type Builtin = Date | Function | Uint8Array | string | number | boolean | undefined;

/** A message with every field optional, nested ones included (ts-proto's `DeepPartial`). */
export type DeepPartial<T> = T extends Builtin
  ? T
  : T extends Array<infer U>
    ? Array<DeepPartial<U>>
    : T extends ReadonlyArray<infer U>
      ? ReadonlyArray<DeepPartial<U>>
      : T extends {}
        ? { [K in keyof T]?: DeepPartial<T[K]> }
        : Partial<T>;

/** What ts-proto generates for each message (`SubmitLeadRequest.encode`, `.decode`, ...). */
export interface MessageType<T> {
  encode(message: T, writer?: BinaryWriter): BinaryWriter;
  decode(input: BinaryReader | Uint8Array, length?: number): T;
  fromPartial(object: DeepPartial<T>): T;
}

/** One method of a ts-proto generic service definition (`LeadServiceDefinition`). */
export interface MethodDefinition<Req, Res, ReqStream extends boolean, ResStream extends boolean> {
  readonly name: string;
  readonly requestType: MessageType<Req>;
  readonly requestStream: ReqStream;
  readonly responseType: MessageType<Res>;
  readonly responseStream: ResStream;
}

export interface ServiceDefinition {
  readonly name: string;
  readonly fullName: string;
  readonly methods: { readonly [method: string]: MethodDefinition<any, any, boolean, boolean> };
}

type Requests<Req> = Iterable<DeepPartial<Req>> | AsyncIterable<DeepPartial<Req>>;

/** The promise API of one method. */
export type MethodCall<M> =
  M extends MethodDefinition<infer Req, infer Res, false, false>
    ? (request: DeepPartial<Req>, options?: CallOptions) => Promise<Res>
    : M extends MethodDefinition<infer Req, infer Res, true, false>
      ? (requests: Requests<Req>, options?: CallOptions) => Promise<Res>
      : M extends MethodDefinition<infer Req, infer Res, false, true>
        ? (request: DeepPartial<Req>, options?: CallOptions) => AsyncIterable<Res>
        : M extends MethodDefinition<infer Req, infer Res, true, true>
          ? (requests: Requests<Req>, options?: CallOptions) => AsyncIterable<Res>
          : never;

/** A service's methods as promises (lowerCamelCase, as ts-proto names them). */
export type ServiceClient<S extends ServiceDefinition> = {
  readonly [K in keyof S["methods"]]: MethodCall<S["methods"][K]>;
};

/** The constructor of a ts-proto grpc-js client (`LeadServiceClient`). */
export type GrpcClientConstructor<C> = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: Partial<grpc.ClientOptions>,
) => C;

/** `authorization` metadata for `token`: `client.getLead(req, bearer(t), callback)`. */
export function bearer(token: string): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  return metadata;
}

function unauthenticated(listener: grpc.InterceptingListener, err: unknown): void {
  const reason = err instanceof Error ? err.message : String(err);
  listener.onReceiveStatus({
    code: grpc.status.UNAUTHENTICATED,
    details: `could not get a token: ${reason}`,
    metadata: new grpc.Metadata(),
  });
}

/** A grpc-js interceptor adding `authorization: Bearer <token>` to calls that carry none. */
export function bearerInterceptor(token: Token): grpc.Interceptor {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        if (metadata.get("authorization").length > 0) return next(metadata, listener);
        let current: string | Promise<string>;
        try {
          current = typeof token === "function" ? token() : token;
        } catch (err) {
          return unauthenticated(listener, err);
        }
        const send = (value: string) => {
          metadata.set("authorization", `Bearer ${value}`);
          next(metadata, listener);
        };
        if (typeof current === "string") return send(current);
        // The call's messages wait until the token is there (grpc-js queues them).
        current.then(send, (err: unknown) => unauthenticated(listener, err));
      },
    });
}

export class Connection {
  readonly target: string;
  private readonly channel: grpc.Channel;
  private readonly credentials: grpc.ChannelCredentials;
  private readonly interceptors: grpc.Interceptor[];
  private readonly base: grpc.Client;
  private readonly timeoutMs: number | null;

  constructor(target: string, options: ConnectOptions = {}) {
    this.target = target;
    this.timeoutMs = options.timeoutMs === undefined ? DEFAULT_TIMEOUT_MS : options.timeoutMs;
    this.credentials = options.secure
      ? grpc.credentials.createSsl(options.rootCerts ?? null)
      : grpc.credentials.createInsecure();
    this.channel = new grpc.Channel(target, this.credentials, {
      "grpc.service_config": JSON.stringify(SERVICE_CONFIG),
      "grpc.enable_retries": 1,
      "grpc.keepalive_time_ms": 300_000,
      "grpc.keepalive_timeout_ms": 20_000,
      "grpc.primary_user_agent": "marque-node-client",
      ...options.channelOptions,
    });
    this.interceptors = options.token === undefined ? [] : [bearerInterceptor(options.token)];
    this.base = this.client(grpc.Client);
  }

  /** Promise clients for a service: `connection.service(LeadServiceDefinition).getLead(...)`. */
  service<S extends ServiceDefinition>(definition: S): ServiceClient<S> {
    const methods: Record<string, unknown> = {};
    for (const [key, method] of Object.entries(definition.methods)) {
      const path = `/${definition.fullName}/${method.name}`;
      methods[key] = this.bind(path, method);
    }
    return Object.freeze(methods) as ServiceClient<S>;
  }

  /** A plain grpc-js client on this connection's channel and token
   * (`connection.client(LeadServiceClient)`), for code written against grpc-js. Its errors
   * are grpc-js `ServiceError`s: `decodeError(err)` decodes them. */
  client<C>(ctor: GrpcClientConstructor<C>): C {
    return new ctor(this.target, this.credentials, {
      channelOverride: this.channel,
      interceptors: this.interceptors,
    });
  }

  /** Closes the channel; calls in flight fail with CANCELLED / UNAVAILABLE. */
  close(): void {
    this.channel.close();
  }

  private bind(
    path: string,
    method: MethodDefinition<any, any, boolean, boolean>,
  ): (input: unknown, options?: CallOptions) => unknown {
    const serialize = (value: unknown) => Buffer.from(method.requestType.encode(value).finish());
    const deserialize = (bytes: Buffer) => method.responseType.decode(bytes);
    const partial = (value: unknown) => method.requestType.fromPartial((value ?? {}) as never);
    const base = this.base;
    if (!method.requestStream && !method.responseStream) {
      return (request, options = {}) =>
        new Promise((resolve, reject) => {
          const call = base.makeUnaryRequest(
            path,
            serialize,
            deserialize,
            partial(request),
            this.metadata(options),
            this.callOptions(options, true),
            (err, reply) => (err ? reject(decodeError(err)) : resolve(reply)),
          );
          cancelOn(options.signal, call);
        });
    }
    if (method.requestStream && !method.responseStream) {
      return (requests, options = {}) =>
        new Promise((resolve, reject) => {
          let finished = false;
          const call = base.makeClientStreamRequest(
            path,
            serialize,
            deserialize,
            this.metadata(options),
            this.callOptions(options, true),
            (err, reply) => {
              finished = true;
              if (err) reject(decodeError(err));
              else resolve(reply);
            },
          );
          cancelOn(options.signal, call);
          pump(requests as Requests<unknown>, partial, call, () => finished).catch((err: unknown) => {
            call.cancel();
            reject(err);
          });
        });
    }
    if (!method.requestStream && method.responseStream) {
      return (request, options = {}) => {
        const call = base.makeServerStreamRequest(
          path,
          serialize,
          deserialize,
          partial(request),
          this.metadata(options),
          this.callOptions(options, false),
        );
        cancelOn(options.signal, call);
        return read(call);
      };
    }
    return (requests, options = {}) => {
      let finished = false;
      const call = base.makeBidiStreamRequest(
        path,
        serialize,
        deserialize,
        this.metadata(options),
        this.callOptions(options, false),
      );
      call.on("status", () => (finished = true));
      cancelOn(options.signal, call);
      pump(requests as Requests<unknown>, partial, call, () => finished).catch(() => call.cancel());
      return read(call);
    };
  }

  private metadata(options: CallOptions): grpc.Metadata {
    let metadata: grpc.Metadata;
    if (options.metadata instanceof grpc.Metadata) {
      metadata = options.metadata.clone();
    } else {
      metadata = new grpc.Metadata();
      for (const [key, value] of Object.entries(options.metadata ?? {})) metadata.set(key, value);
    }
    if (options.token !== undefined) metadata.set("authorization", `Bearer ${options.token}`);
    return metadata;
  }

  private callOptions(options: CallOptions, unaryResponse: boolean): grpc.CallOptions {
    if (options.deadline !== undefined) return { deadline: options.deadline };
    const timeout = options.timeoutMs ?? (unaryResponse ? this.timeoutMs : null);
    return timeout === null || timeout === undefined ? {} : { deadline: Date.now() + timeout };
  }
}

function cancelOn(signal: AbortSignal | undefined, call: { cancel(): void }): void {
  if (!signal) return;
  if (signal.aborted) call.cancel();
  else signal.addEventListener("abort", () => call.cancel(), { once: true });
}

async function pump(
  requests: Requests<unknown>,
  partial: (value: unknown) => unknown,
  call: grpc.ClientWritableStream<unknown>,
  finished: () => boolean,
): Promise<void> {
  for await (const request of requests) {
    if (finished()) return;
    if (!call.write(partial(request))) await once(call, "drain");
  }
  if (!finished()) call.end();
}

async function* read<T>(call: grpc.ClientReadableStream<T>): AsyncGenerator<T> {
  let done = false;
  try {
    for await (const message of call) yield message as T;
    done = true;
  } catch (err) {
    done = true;
    throw decodeError(err);
  } finally {
    if (!done) call.cancel(); // the caller stopped reading early
  }
}

/** A connection to Marque at `target` (`host:port` or `dns:///host:port`). */
export function connect(target: string, options: ConnectOptions = {}): Connection {
  return new Connection(target, options);
}
