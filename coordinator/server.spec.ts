import assert from "node:assert/strict";
import { test } from "node:test";
import { LavieError } from "../core/errors.ts";
import type { NatsJobStore } from "../transport/nats/kv.ts";
import type { JobRecord } from "./distributed/ports.ts";
import { KvJobStore } from "./server.ts";

const record = { id: "job-1", state: "running", done: {} } as unknown as JobRecord;

function flakyKv(failures: number, err = new LavieError("unavailable", "put job job-1: timeout")) {
  const puts: unknown[] = [];
  const kv = {
    put: async (_id: string, value: unknown) => {
      puts.push(value);
      if (puts.length <= failures) throw err;
      return puts.length;
    },
  };
  return { kv: kv as unknown as NatsJobStore, puts };
}

test("a job record write is retried while NATS is unreachable (a server restart), so it is not lost", async () => {
  const { kv, puts } = flakyKv(2);
  await new KvJobStore(kv).put(record);
  assert.equal(puts.length, 3);
});

test("job record writes are not retried on other errors, nor once the connection is closed", async () => {
  const bad = flakyKv(5, new LavieError("invalid_argument", "bad id"));
  await assert.rejects(new KvJobStore(bad.kv).put(record), /bad id/);
  assert.equal(bad.puts.length, 1);
  const closed = flakyKv(5);
  await assert.rejects(new KvJobStore(closed.kv, () => true).put(record), /timeout/);
  assert.equal(closed.puts.length, 1);
});
