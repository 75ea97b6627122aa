/**
 * Trace-context propagation over gRPC metadata and job records, on @opentelemetry/api only (the
 * SDK is started by each main.ts; without it every span here is a no-op). W3C traceparent: the
 * propagator is the one registered globally by startTelemetry(); when none is, the W3C one is used,
 * so a stored traceparent still links a restarted coordinator's spans to the job's trace.
 *
 * Nothing here throws into the caller: a broken carrier gives the root context.
 */
import * as grpc from "@grpc/grpc-js";
import {
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  type TextMapGetter,
  type TextMapSetter,
  trace,
} from "@opentelemetry/api";
import { contextFromTraceparent, traceparentOf } from "../../core/tracing.ts";

/**
 * W3C traceparent only (no tracestate), used when no global propagator is registered (tracing
 * off): a client's trace context still passes through to the runners. Avoids loading
 * @opentelemetry/core (~60 ms of start-up) in processes that do not trace.
 */
const w3c = {
  inject(ctx: Context, carrier: grpc.Metadata, setter: TextMapSetter<grpc.Metadata>): void {
    const tp = traceparentOf(ctx);
    if (tp) setter.set(carrier, "traceparent", tp);
  },
  extract(base: Context, carrier: grpc.Metadata, getter: TextMapGetter<grpc.Metadata>): Context {
    const v = getter.get(carrier, "traceparent");
    const tp = Array.isArray(v) ? v[0] : v;
    const ctx = contextFromTraceparent(tp);
    const sc = trace.getSpanContext(ctx);
    return sc ? trace.setSpanContext(base, sc) : base;
  },
};

const metadataSetter: TextMapSetter<grpc.Metadata> = {
  set: (md, key, value) => md.set(key, value),
};
/** Metadata propagators never see: credentials must not reach baggage, spans or exporters. */
const SECRET_KEYS = new Set(["authorization", "cookie", "proxy-authorization"]);

const metadataGetter: TextMapGetter<grpc.Metadata> = {
  keys: (md) => Object.keys(md.getMap()).filter((k) => !SECRET_KEYS.has(k)),
  get: (md, key) => {
    if (SECRET_KEYS.has(key.toLowerCase())) return undefined;
    const v = md.get(key);
    if (v.length === 0) return undefined;
    return v.map((x) => (typeof x === "string" ? x : x.toString("utf8")));
  },
};

/** Writes ctx's trace context (traceparent, tracestate) into md; returns md. */
export function injectMetadata(
  md: grpc.Metadata = new grpc.Metadata(),
  ctx: Context = context.active(),
): grpc.Metadata {
  try {
    propagation.inject(ctx, md, metadataSetter);
    if (md.get("traceparent").length === 0) w3c.inject(ctx, md, metadataSetter);
  } catch {
    // telemetry never fails a call
  }
  return md;
}

/** The trace context carried by md (ROOT_CONTEXT when none). */
export function extractMetadata(md: grpc.Metadata | undefined, base: Context = ROOT_CONTEXT): Context {
  if (!md) return base;
  try {
    const ctx = propagation.extract(base, md, metadataGetter);
    if (trace.getSpanContext(ctx)) return ctx;
    return w3c.extract(base, md, metadataGetter);
  } catch {
    return base;
  }
}

export { contextFromTraceparent, endSpan, traceparentOf, tracer } from "../../core/tracing.ts";

/**
 * A grpc-js client interceptor that injects the active trace context into every call's metadata
 * (for clients created with `interceptors: [traceClientInterceptor]`).
 */
export const traceClientInterceptor: grpc.Interceptor = (options, nextCall) =>
  new grpc.InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      if (metadata.get("traceparent").length === 0) injectMetadata(metadata);
      next(metadata, listener);
    },
  });
