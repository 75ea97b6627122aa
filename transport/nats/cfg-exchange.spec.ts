import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { LavieError } from "../../core/errors.ts";
import { type NatsServerHandle, startNatsServer } from "../../test/support/nats-server.ts";
import { cfgSubject, NatsCfgExchange } from "./cfg-exchange.ts";
import { connectNats, type NatsClients } from "./connect.ts";

describe("NatsCfgExchange", () => {
  let srv: NatsServerHandle;
  let a: NatsClients;
  let b: NatsClients;

  before(async () => {
    srv = await startNatsServer({ jetstream: true });
    a = await connectNats(srv.url, { name: "cfg-a" });
    b = await connectNats(srv.url, { name: "cfg-b" });
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await srv?.stop();
  });

  const values = (n: number, k: number) => Float32Array.from({ length: n }, (_, i) => i * 0.5 + k);

  test("two members swap every step, in multi-part messages, whichever asks first", async () => {
    const ea = await NatsCfgExchange.open(a, { maxMessageBytes: 1000 });
    const eb = await NatsCfgExchange.open(b, { maxMessageBytes: 1000 }); // the stream exists already
    const m = { jobId: "job-1", gang: "base_cfg", attempt: 1 } as const;
    const u = ea.member({ ...m, branch: "uncond" });
    const c = eb.member({ ...m, branch: "cond" });
    const n = 1500; // 6000 bytes: 6 parts
    for (let step = 0; step < 3; step++) {
      const pu = u.swap(step, values(n, step));
      await new Promise((r) => setTimeout(r, 50)); // cond publishes after uncond is waiting
      const [gotU, gotC] = await Promise.all([pu, c.swap(step, values(n, 100 + step))]);
      assert.deepEqual(gotU, values(n, 100 + step));
      assert.deepEqual(gotC, values(n, step));
    }
    // (cond read uncond's message published 50 ms before it asked: a late reader still gets it.)
    assert.equal(cfgSubject({ ...m, attempt: 2, branch: "cond" }, 0), "lavie.cfg.job-1.base_cfg.2.0.cond");
  });

  test("a peer that never answers fails the step as retryable (unavailable)", async () => {
    const ex = await NatsCfgExchange.open(a, { timeoutMs: 1200 });
    const lone = ex.member({ jobId: "job-2", gang: "base_cfg", attempt: 1, branch: "cond" });
    await assert.rejects(
      lone.swap(0, values(8, 0)),
      (e: unknown) => e instanceof LavieError && e.code === "unavailable" && e.retryable,
    );
  });

  test("an aborted swap rejects at once", async () => {
    const ex = await NatsCfgExchange.open(a);
    const lone = ex.member({ jobId: "job-3", gang: "base_cfg", attempt: 1, branch: "uncond" });
    const ac = new AbortController();
    const p = lone.swap(0, values(8, 0), ac.signal);
    setTimeout(() => ac.abort(new LavieError("cancelled", "stop")), 100);
    const t0 = Date.now();
    await assert.rejects(p, (e: unknown) => e instanceof LavieError && e.code === "cancelled");
    assert.ok(Date.now() - t0 < 2_000);
  });
});
