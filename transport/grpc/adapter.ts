/**
 * @grpc/grpc-js over protobuf-es v2 service descriptors (gen/): grpc-js has no maintained adapter
 * for protobuf-es messages, so this builds grpc-js service definitions from the generated
 * descriptors (serialize with toBinary, wrapping the bytes without copying; deserialize with
 * fromBinary) and gives typed unary and server-streaming client calls.
 */
import {
  create,
  type DescMessage,
  type DescMethod,
  type DescService,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { LavieError } from "../../core/errors.ts";
import { malformedMessage } from "./malformed.ts";
import { toGrpcError } from "./status.ts";

function bytes(u8: Uint8Array): Buffer {
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

/** A grpc-js service definition for a generated service. */
export function serviceDefinition(service: DescService): grpc.ServiceDefinition {
  const def: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const m of service.methods) {
    def[m.localName] = {
      path: `/${service.typeName}/${m.name}`,
      originalName: m.name,
      requestStream: m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming",
      responseStream: m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming",
      requestSerialize: (msg: MessageShape<DescMessage>) => bytes(toBinary(m.input, msg)),
      requestDeserialize: (buf: Buffer) => decodeRequest(m.input, buf),
      responseSerialize: (msg: MessageShape<DescMessage>) => bytes(toBinary(m.output, msg)),
      responseDeserialize: (buf: Buffer) => fromBinary(m.output, buf),
    } as grpc.MethodDefinition<unknown, unknown>;
  }
  return def as grpc.ServiceDefinition;
}

/**
 * Requests whose bytes are not a valid message. grpc-js answers a throwing deserializer with
 * INTERNAL ("Error deserializing request"), so the deserializer returns an empty message instead,
 * registered here with its INVALID_ARGUMENT error; checkRequests() answers with that error.
 */
const MALFORMED = new WeakMap<object, LavieError>();

function decodeRequest(desc: DescMessage, buf: Buffer): MessageShape<DescMessage> {
  try {
    return fromBinary(desc, buf);
  } catch (err) {
    const empty = create(desc);
    MALFORMED.set(empty, malformedMessage(desc, buf, err));
    return empty;
  }
}

/** The INVALID_ARGUMENT error of a request that arrived malformed (an empty message stands in). */
export function malformedRequest(request: unknown): LavieError | undefined {
  return typeof request === "object" && request !== null ? MALFORMED.get(request) : undefined;
}

/**
 * Wraps a service implementation so that a malformed request is answered with INVALID_ARGUMENT
 * before its handler runs (unary: the callback; server streaming: the stream's status).
 */
export function checkRequests(
  service: DescService,
  impl: grpc.UntypedServiceImplementation,
): grpc.UntypedServiceImplementation {
  const out: grpc.UntypedServiceImplementation = { ...impl };
  for (const m of service.methods) {
    const key = m.localName in impl ? m.localName : m.name; // grpc-js accepts either
    const fn = impl[key] as ((...args: unknown[]) => void) | undefined;
    if (!fn) continue;
    const wrapped = (call: { request?: unknown; emit(e: "error", err: unknown): boolean }, cb?: unknown) => {
      const bad = call.request === undefined ? undefined : malformedRequest(call.request);
      if (!bad) return fn.call(impl, call, cb);
      if (m.methodKind === "unary") (cb as grpc.sendUnaryData<unknown>)(toGrpcError(bad));
      else call.emit("error", toGrpcError(bad)); // grpc-js 1.14 sends a stream's status this way
    };
    out[key] = wrapped as grpc.UntypedHandleCall;
  }
  return out;
}

/** server.addService for a generated service, with malformed requests answered (checkRequests). */
export function addService(
  server: grpc.Server,
  service: DescService,
  impl: grpc.UntypedServiceImplementation,
): void {
  server.addService(serviceDefinition(service), checkRequests(service, impl));
}

type Methods<S extends DescService> = S["method"];

/** A generic grpc-js client for a generated service. */
export function createClient(
  service: DescService,
  address: string,
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  options: grpc.ClientOptions = {},
): grpc.Client {
  const Ctor = grpc.makeGenericClientConstructor(serviceDefinition(service), service.name);
  return new Ctor(address, credentials, {
    "grpc.max_receive_message_length": 16 * 1024 * 1024,
    ...options,
  });
}

export interface CallOptions {
  metadata?: grpc.Metadata;
  deadline?: grpc.Deadline;
  signal?: AbortSignal;
}

function method<S extends DescService>(service: S, name: keyof Methods<S> & string): DescMethod {
  const m = service.method[name] as DescMethod | undefined;
  if (!m) throw new LavieError("internal", `${service.typeName} has no method ${name}`);
  return m;
}

/** Calls a unary method. */
export function unary<S extends DescService, K extends keyof Methods<S> & string>(
  client: grpc.Client,
  service: S,
  name: K,
  request: MessageInitShape<Methods<S>[K]["input"]>,
  opts: CallOptions = {},
): Promise<MessageShape<Methods<S>[K]["output"]>> {
  const m = method(service, name);
  const req = create(m.input, request as never);
  return new Promise((resolve, reject) => {
    const onAbort = () => call.cancel();
    const call = client.makeUnaryRequest(
      `/${service.typeName}/${m.name}`,
      (msg: MessageShape<DescMessage>) => bytes(toBinary(m.input, msg)),
      (buf: Buffer) => fromBinary(m.output, buf),
      req,
      opts.metadata ?? new grpc.Metadata(),
      opts.deadline ? { deadline: opts.deadline } : {},
      (err, res) => {
        opts.signal?.removeEventListener("abort", onAbort);
        if (err) reject(err);
        else resolve(res as MessageShape<Methods<S>[K]["output"]>);
      },
    );
    opts.signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Calls a server-streaming method; iterate the result, break or abort to cancel the call. */
export async function* serverStream<S extends DescService, K extends keyof Methods<S> & string>(
  client: grpc.Client,
  service: S,
  name: K,
  request: MessageInitShape<Methods<S>[K]["input"]>,
  opts: CallOptions = {},
): AsyncGenerator<MessageShape<Methods<S>[K]["output"]>> {
  const m = method(service, name);
  const req = create(m.input, request as never);
  const call = client.makeServerStreamRequest(
    `/${service.typeName}/${m.name}`,
    (msg: MessageShape<DescMessage>) => bytes(toBinary(m.input, msg)),
    (buf: Buffer) => fromBinary(m.output, buf),
    req,
    opts.metadata ?? new grpc.Metadata(),
    opts.deadline ? { deadline: opts.deadline } : {},
  );
  const onAbort = () => call.cancel();
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const msg of call) yield msg as MessageShape<Methods<S>[K]["output"]>;
  } finally {
    opts.signal?.removeEventListener("abort", onAbort);
    call.cancel();
  }
}
