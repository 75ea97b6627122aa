import assert from "node:assert/strict";
import { test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { ROOT_CONTEXT, trace } from "@opentelemetry/api";
import { contextFromTraceparent } from "../../core/tracing.ts";
import { extractMetadata, injectMetadata } from "./propagation.ts";

const TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

test("a trace context goes into gRPC metadata as traceparent and comes back out (no SDK started)", () => {
  const md = injectMetadata(new grpc.Metadata(), contextFromTraceparent(TP));
  assert.deepEqual(md.get("traceparent"), [TP]);
  const sc = trace.getSpanContext(extractMetadata(md));
  assert.equal(sc?.traceId, "4bf92f3577b34da6a3ce929d0e0e4736");
  assert.equal(sc?.spanId, "00f067aa0ba902b7");
});

test("no or malformed traceparent metadata gives the root context; injecting the root adds nothing", () => {
  assert.equal(extractMetadata(undefined), ROOT_CONTEXT);
  const md = new grpc.Metadata();
  md.set("traceparent", "not-a-traceparent");
  assert.equal(trace.getSpanContext(extractMetadata(md)), undefined);
  assert.deepEqual(injectMetadata(new grpc.Metadata(), ROOT_CONTEXT).get("traceparent"), []);
});
