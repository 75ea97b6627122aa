/**
 * LavieError <-> gRPC status, in one place. The retryable flag travels in the "lavie-retryable"
 * trailer, the field in "lavie-field" and a retry hint (RESOURCE_EXHAUSTED) in "lavie-retry-after-ms",
 * so a client rebuilds the same LavieError.
 */
import * as grpc from "@grpc/grpc-js";
import { type ErrorCode, LavieError } from "../../core/errors.ts";

const TO_GRPC: Record<ErrorCode, grpc.status> = {
  invalid_argument: grpc.status.INVALID_ARGUMENT,
  not_found: grpc.status.NOT_FOUND,
  failed_precondition: grpc.status.FAILED_PRECONDITION,
  resource_exhausted: grpc.status.RESOURCE_EXHAUSTED,
  cancelled: grpc.status.CANCELLED,
  deadline_exceeded: grpc.status.DEADLINE_EXCEEDED,
  unavailable: grpc.status.UNAVAILABLE,
  unauthenticated: grpc.status.UNAUTHENTICATED,
  permission_denied: grpc.status.PERMISSION_DENIED,
  data_loss: grpc.status.DATA_LOSS,
  internal: grpc.status.INTERNAL,
};

const FROM_GRPC = new Map<grpc.status, ErrorCode>(
  Object.entries(TO_GRPC).map(([k, v]) => [v, k as ErrorCode]),
);

/** A grpc-js ServiceError-shaped object for callbacks and stream.destroy(). */
export function toGrpcError(err: unknown): Partial<grpc.StatusObject> & Error {
  const e = LavieError.from(err);
  const metadata = new grpc.Metadata();
  metadata.set("lavie-retryable", e.retryable ? "1" : "0");
  if (e.field) metadata.set("lavie-field", e.field);
  if (e.retryAfterMs !== undefined) metadata.set("lavie-retry-after-ms", String(Math.ceil(e.retryAfterMs)));
  return Object.assign(new Error(e.message), { code: TO_GRPC[e.code], details: e.message, metadata });
}

/**
 * How grpc-js says a call never left the client: the channel had no connection (the peer refused
 * it). grpc-js gives no structured signal for this, only the text; it is read here, once, into
 * LavieError.undelivered, and everything after classifies by that flag.
 */
const NOT_CONNECTED = /No connection established|ECONNREFUSED/;

/** A LavieError from a grpc-js error (status code, details and lavie-* trailers). */
export function fromGrpcError(err: unknown): LavieError {
  if (err instanceof LavieError) return err;
  const g = err as Partial<grpc.ServiceError>;
  if (typeof g?.code !== "number") return LavieError.from(err);
  const retryable = g.metadata?.get("lavie-retryable")[0];
  const field = g.metadata?.get("lavie-field")[0];
  const retryAfter = Number(g.metadata?.get("lavie-retry-after-ms")[0] ?? Number.NaN);
  if (
    retryable === undefined &&
    g.code !== grpc.status.INVALID_ARGUMENT &&
    g.code !== grpc.status.NOT_FOUND &&
    g.code !== grpc.status.UNAUTHENTICATED &&
    g.code !== grpc.status.PERMISSION_DENIED
  ) {
    // No lavie trailers: the error did not come from a lavie service but from the transport (a peer
    // that died mid-call, a dropped connection): the call may succeed elsewhere.
    const details = g.details ?? g.message ?? "gRPC transport error";
    return new LavieError("unavailable", details, {
      undelivered: g.code === grpc.status.UNAVAILABLE && NOT_CONNECTED.test(details),
      cause: err,
    });
  }
  const code = FROM_GRPC.get(g.code) ?? "internal";
  return new LavieError(code, g.details ?? g.message ?? "gRPC error", {
    ...(field !== undefined && { field: String(field) }),
    ...(Number.isFinite(retryAfter) && retryAfter >= 0 && { retryAfterMs: retryAfter }),
    retryable:
      retryable === undefined
        ? code === "unavailable" || code === "deadline_exceeded" || code === "data_loss"
        : retryable === "1",
    cause: err,
  });
}
