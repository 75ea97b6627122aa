import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { LavieError } from "../../core/errors.ts";
import { type NatsServerHandle, startNatsServer } from "../../test/support/nats-server.ts";
import { connectNats, type NatsClients } from "./connect.ts";
import { NatsJobStore } from "./kv.ts";
import { NatsTensorStore } from "./tensors.ts";

describe("state survives a nats-server restart", () => {
  let srv: NatsServerHandle;
  let c: NatsClients;

  before(async () => {
    srv = await startNatsServer({ jetstream: true });
    // Short JetStream timeout: a request sent while the client is reconnecting is lost and times
    // out (a retryable "unavailable"); callers retry.
    c = await connectNats(srv.url, { name: "restart-spec", jsTimeout: 1_000 });
  });
  after(async () => {
    await c?.close();
    await srv?.stop();
  });

  test("objects and KV entries written before restart() are readable after it, by a client connected before", async () => {
    const store = await NatsTensorStore.open(c.objm);
    const jobs = await NatsJobStore.open(c.kvm);
    const bytes = randomBytes(2_500_000 * 4);
    const data = new Float32Array(bytes.buffer, bytes.byteOffset, 2_500_000);
    const ref = await store.put("jobR/latents/0", { shape: [1, 4, 625_000], data });
    const rev = await jobs.put("jobR", { state: "running" }, { revision: 0 });
    assert.equal(await jobs.claimIdempotencyKey("k1", "jobR"), null);

    const port = srv.port;
    await srv.restart();
    assert.equal(srv.port, port);

    // The same connection reconnects on its own; give JetStream a moment to come back.
    const t0 = Date.now();
    let back: Awaited<ReturnType<typeof store.get>> | null = null;
    while (!back) {
      try {
        back = await store.get(ref);
      } catch (err) {
        assert.ok(err instanceof LavieError && err.retryable, String(err));
        if (Date.now() - t0 > 60_000) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert.equal(Buffer.compare(Buffer.from(back.data.buffer), bytes), 0);
    const job = await jobs.get<{ state: string }>("jobR");
    assert.deepEqual(job?.value, { state: "running" });
    assert.equal(job?.revision, rev);
    assert.equal(await jobs.claimIdempotencyKey("k1", "jobOther"), "jobR");
    // Writes work after the restart too.
    await jobs.put("jobR", { state: "done" }, { revision: rev });
    const ref2 = await store.put("jobR/latents/1", { shape: [2], data: new Float32Array([1, 2]) });
    assert.deepEqual([...(await store.get(ref2)).data], [1, 2]);
  });
});
