/**
 * Trace helpers on @opentelemetry/api only (no SDK: without one started by main.ts every span is a
 * no-op). A job's trace context is kept as a W3C traceparent string in its record, so a restarted
 * coordinator continues the same trace. Nothing here throws into the caller.
 */
import {
  type Context,
  ROOT_CONTEXT,
  type Span,
  SpanStatusCode,
  TraceFlags,
  type Tracer,
  trace,
} from "@opentelemetry/api";

/** The tracer of a lavie-serve component. */
export function tracer(scope = "lavie-serve"): Tracer {
  return trace.getTracer(scope);
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** ctx's span as a W3C traceparent ("" when ctx has no valid span context). */
export function traceparentOf(ctx: Context): string {
  const sc = trace.getSpanContext(ctx);
  if (!sc || !trace.isSpanContextValid(sc)) return "";
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, "0")}`;
}

/** The context of a traceparent string (ROOT_CONTEXT when empty or malformed). */
export function contextFromTraceparent(traceparent: string | undefined): Context {
  const m = traceparent ? TRACEPARENT.exec(traceparent.trim()) : null;
  if (!m) return ROOT_CONTEXT;
  const sc = {
    traceId: m[1]!,
    spanId: m[2]!,
    traceFlags: Number.parseInt(m[3]!, 16) & TraceFlags.SAMPLED,
    isRemote: true,
  };
  if (!trace.isSpanContextValid(sc)) return ROOT_CONTEXT;
  return trace.setSpanContext(ROOT_CONTEXT, sc);
}

/** Ends span, with an error status when err is given (never throws). */
export function endSpan(span: Span, err?: unknown): void {
  try {
    if (err !== undefined) {
      span.setStatus({
        code: SpanStatusCode.ERROR,
        message: err instanceof Error ? err.message : String(err),
      });
      if (err instanceof Error) span.recordException(err);
    }
    span.end();
  } catch {
    // telemetry never throws into the application
  }
}
