import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { LavieError } from "../../core/errors.ts";
import { type NatsServerHandle, startNatsServer } from "../../test/support/nats-server.ts";
import { connectNats, type NatsClients } from "./connect.ts";
import { NatsJobStore } from "./kv.ts";

interface Job {
  state: string;
  n?: number;
}

const isConflict = (e: unknown) =>
  e instanceof LavieError && e.code === "failed_precondition" && e.retryable && /job j1/.test(e.message);

describe("NatsJobStore", () => {
  let srv: NatsServerHandle;
  let c: NatsClients;
  let jobs: NatsJobStore;

  before(async () => {
    srv = await startNatsServer({ jetstream: true });
    c = await connectNats(srv.url, { name: "kv-spec" });
    jobs = await NatsJobStore.open(c.kvm);
  });
  after(async () => {
    await c?.close();
    await srv?.stop();
  });

  test("put/get/list/delete", async () => {
    assert.equal(await jobs.get("j0"), null);
    const r1 = await jobs.put<Job>("j0", { state: "queued" }, { revision: 0 });
    await jobs.put<Job>("j9", { state: "queued" });
    const got = await jobs.get<Job>("j0");
    assert.deepEqual(got?.value, { state: "queued" });
    assert.equal(got?.revision, r1);
    assert.deepEqual(
      (await jobs.list<Job>()).map((r) => r.id),
      ["j0", "j9"],
    );
    await jobs.delete("j9");
    assert.equal(await jobs.get("j9"), null);
    assert.deepEqual(
      (await jobs.list()).map((r) => r.id),
      ["j0"],
    );
    await assert.rejects(
      jobs.get("bad id!"),
      (e) => e instanceof LavieError && e.code === "invalid_argument",
    );
  });

  test("optimistic concurrency: a stale revision conflicts, create-only conflicts on an existing job", async () => {
    const r1 = await jobs.put<Job>("j1", { state: "queued" }, { revision: 0 });
    const r2 = await jobs.put<Job>("j1", { state: "running" }, { revision: r1 });
    assert.ok(r2 > r1);
    await assert.rejects(jobs.put<Job>("j1", { state: "cancelled" }, { revision: r1 }), isConflict);
    await assert.rejects(jobs.put<Job>("j1", { state: "queued" }, { revision: 0 }), isConflict);
    await assert.rejects(jobs.delete("j1", { revision: r1 }), isConflict);
    assert.deepEqual((await jobs.get<Job>("j1"))?.value, { state: "running" });
  });

  test("update() retries read-modify-write under contention", async () => {
    await jobs.put<Job>("j2", { state: "running", n: 0 });
    await Promise.all(
      Array.from({ length: 8 }, () =>
        jobs.update<Job>("j2", (cur) => ({ state: "running", n: (cur?.n ?? 0) + 1 }), 50),
      ),
    );
    assert.equal((await jobs.get<Job>("j2"))?.value.n, 8);
  });

  test("10 concurrent claims of one idempotency key: exactly one wins, the rest see its job", async () => {
    const key = "client-req: 42 / ünïcode";
    const ids = Array.from({ length: 10 }, (_, i) => `job-${i}`);
    const results = await Promise.all(ids.map((id) => jobs.claimIdempotencyKey(key, id)));
    const winners = ids.filter((_, i) => results[i] === null);
    assert.equal(winners.length, 1);
    for (const r of results) if (r !== null) assert.equal(r, winners[0]);
    assert.equal(await jobs.claimIdempotencyKey(key, "job-late"), winners[0]);
    await jobs.releaseIdempotencyKey(key);
    assert.equal(await jobs.claimIdempotencyKey(key, "job-late"), null);
  });
});
