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
      requestDeserialize: (buf: Buffer) => fromBinary(m.input, buf),
      responseSerialize: (msg: MessageShape<DescMessage>) => bytes(toBinary(m.output, msg)),
      responseDeserialize: (buf: Buffer) => fromBinary(m.output, buf),
    } as grpc.MethodDefinition<unknown, unknown>;
  }
  return def as grpc.ServiceDefinition;
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
  if (!m) throw new Error(`${service.typeName} has no method ${name}`);
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
