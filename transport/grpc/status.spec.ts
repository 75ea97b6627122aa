import assert from "node:assert/strict";
import { createServer } from "node:net";
import { test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import type { TaskCall } from "../../coordinator/distributed/ports.ts";
import type { Task } from "../../coordinator/plan/types.ts";
import { LavieError } from "../../core/errors.ts";
import type { JobSpec } from "../../core/job.ts";
import { GrpcRunnerClient } from "./runner-client.ts";
import { fromGrpcError, toGrpcError } from "./status.ts";

/** A local port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

test("a call to a runner that refuses the connection is unavailable and undelivered", async () => {
  const port = await closedPort();
  const client = new GrpcRunnerClient();
  const call: TaskCall = {
    jobId: "j",
    attempt: 1,
    task: { id: "text.base#0", kind: "text", stage: "base" } as Task,
    spec: {} as JobSpec,
    inputs: [],
    outputObject: "j/text.base/0",
    onProgress: () => {},
    signal: new AbortController().signal,
  };
  try {
    const runner = {
      id: "gone",
      address: `127.0.0.1:${port}`,
      stages: [],
      models: [],
      slots: 1,
      freeSlots: 1,
    };
    await assert.rejects(client.execute(runner, call), (e: unknown) => {
      assert.ok(e instanceof LavieError, String(e));
      assert.equal(e.code, "unavailable");
      assert.equal(e.undelivered, true, e.message);
      assert.equal(e.retryable, true);
      return true;
    });
  } finally {
    client.close();
  }
});

test("only the transport's own 'no connection' failures are undelivered, never a service's error text", () => {
  const transport = (code: grpc.status, details: string) =>
    fromGrpcError(Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() }));
  assert.equal(
    transport(grpc.status.UNAVAILABLE, "No connection established. Last error: x").undelivered,
    true,
  );
  assert.equal(transport(grpc.status.UNAVAILABLE, "connect ECONNREFUSED 10.0.0.1:7").undelivered, true);
  const dropped = transport(grpc.status.UNAVAILABLE, "Connection dropped");
  assert.equal(dropped.code, "unavailable");
  assert.equal(dropped.undelivered, false, "a peer that died mid-call had the request");
  assert.equal(transport(grpc.status.INTERNAL, "ECONNREFUSED from a dependency").undelivered, false);
  // A lavie service's error (with its trailers) is what the service said, whatever the words.
  const fromService = fromGrpcError(
    toGrpcError(new LavieError("unavailable", "runner draining: No connection established")),
  );
  assert.equal(fromService.code, "unavailable");
  assert.equal(fromService.undelivered, false);
  assert.equal(LavieError.from(new Error("x")).undelivered, false);
});
