import assert from "node:assert/strict";
import { test } from "node:test";
import { ROOT_CONTEXT, trace } from "@opentelemetry/api";
import { contextFromTraceparent, traceparentOf } from "./tracing.ts";

const TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

test("a stored traceparent gives back the same span context (a restarted coordinator joins the trace)", () => {
  const ctx = contextFromTraceparent(TP);
  const sc = trace.getSpanContext(ctx);
  assert.equal(sc?.traceId, "0af7651916cd43dd8448eb211c80319c");
  assert.equal(sc?.spanId, "b7ad6b7169203331");
  assert.equal(sc?.isRemote, true);
  assert.equal(traceparentOf(ctx), TP);
});

test("missing or malformed traceparents give the root context and an empty string", () => {
  for (const bad of [undefined, "", "garbage", "00-00000000000000000000000000000000-b7ad6b7169203331-01"]) {
    assert.equal(contextFromTraceparent(bad), ROOT_CONTEXT, String(bad));
  }
  assert.equal(traceparentOf(ROOT_CONTEXT), "");
});
