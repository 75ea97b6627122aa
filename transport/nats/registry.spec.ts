import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type NatsServerHandle, startNatsServer } from "../../test/support/nats-server.ts";
import { connectNats, type NatsClients } from "./connect.ts";
import { type LiveRunner, type RunnerInfo, RunnerRegistry } from "./registry.ts";

const TTL = 1_000;

function runner(id: string, over: Partial<RunnerInfo> = {}): RunnerInfo {
  return {
    id,
    address: `127.0.0.1:70${id.length}`,
    stages: ["base"],
    models: ["base"],
    slots: 2,
    freeSlots: 2,
    ...over,
  };
}

async function until(pred: () => boolean, ms: number, what: string): Promise<number> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - t0;
}

describe("RunnerRegistry", () => {
  let srv: NatsServerHandle;
  let c: NatsClients;
  let reg: RunnerRegistry;

  before(async () => {
    srv = await startNatsServer({ jetstream: true });
    c = await connectNats(srv.url, { name: "registry-watcher" });
    reg = await RunnerRegistry.open(c.kvm, { ttlMs: TTL });
  });
  after(async () => {
    await c?.close();
    await srv?.stop();
  });

  test("registration and heartbeat updates are seen by a watcher and list(); deregister removes", async () => {
    let seen: LiveRunner[] = [];
    const w = await reg.watchRunners((rs) => {
      seen = rs;
    });
    let free = 2;
    const r = await reg.register(runner("r1"), { intervalMs: 100, update: () => ({ freeSlots: free }) });
    await until(() => seen.length === 1, 30_000, "r1 to appear");
    assert.equal(seen[0]?.id, "r1");
    assert.deepEqual(seen[0]?.stages, ["base"]);
    free = 0;
    await until(() => seen[0]?.freeSlots === 0, 30_000, "freeSlots update");
    assert.deepEqual(
      (await reg.list()).map((x) => [x.id, x.freeSlots]),
      [["r1", 0]],
    );
    await r.deregister();
    await until(() => seen.length === 0, 30_000, "r1 to disappear");
    assert.deepEqual(await reg.list(), []);
    w.stop();
  });

  test("a runner that stops heartbeating (connection gone) disappears within about the TTL", async () => {
    const rc = await connectNats(srv.url, { name: "runner-r2" });
    const rreg = await RunnerRegistry.open(rc.kvm, { ttlMs: TTL });
    let seen: LiveRunner[] = [];
    const w = await reg.watchRunners((rs) => {
      seen = rs;
    });
    try {
      let beats = 0;
      let appeared = false;
      let expiredWhileAlive = false;
      await rreg.register(runner("r2"), {
        intervalMs: 100,
        onError: () => {},
        update: () => {
          beats++;
          if (appeared && !seen.some((x) => x.id === "r2")) expiredWhileAlive = true;
          return {};
        },
      });
      await until(() => seen.some((x) => x.id === "r2"), 30_000, "r2 to appear");
      appeared = true;
      // Survives heartbeats past the TTL while alive: 12 beats at least 100 ms apart span > TTL.
      const from = beats;
      await until(() => beats >= from + 12, 60_000, "12 more heartbeats");
      assert.ok(seen.some((x) => x.id === "r2") && !expiredWhileAlive, "r2 expired while heartbeating");
      await rc.nc.close(); // the runner dies: no deregister, heartbeats stop
      // Gone once silent for the TTL (bounded generously: a loaded machine sweeps late, not never).
      await until(() => !seen.some((x) => x.id === "r2"), TTL * 30, "r2 to expire");
      assert.deepEqual(await reg.list(), []);
    } finally {
      w.stop();
      await rc.close();
    }
  });
});
