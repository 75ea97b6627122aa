import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { LavieError } from "../../core/errors.ts";
import { type NatsServerHandle, startNatsServer } from "../../test/support/nats-server.ts";
import { CFG_STREAM, cfgSubject, NatsCfgExchange } from "./cfg-exchange.ts";
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

  /** Resolves once the stream holds the last part ("n/n") on `subject`: its publisher is done. */
  async function published(subject: string): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const msg = await a.jsm.streams.getMessage(CFG_STREAM, { last_by_subj: subject }).catch(() => null);
      const [k, n] = (msg?.header?.get("Lavie-Part") ?? "").split("/");
      if (k && k === n) return;
      if (Date.now() > deadline) assert.fail(`nothing published on ${subject} within 30 s`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  test("two members swap every step, in multi-part messages, whichever asks first", async () => {
    const ea = await NatsCfgExchange.open(a, { maxMessageBytes: 1000 });
    const eb = await NatsCfgExchange.open(b, { maxMessageBytes: 1000 }); // the stream exists already
    const m = { jobId: "job-1", gang: "base_cfg", attempt: 1 } as const;
    const u = ea.member({ ...m, branch: "uncond" });
    const c = eb.member({ ...m, branch: "cond" });
    const n = 1500; // 6000 bytes: 6 parts
    for (let step = 0; step < 3; step++) {
      // Steps 0 and 2: uncond publishes and waits before cond asks (cond is a late reader); step 1:
      // cond first.
      const [first, second] = step === 1 ? [c, u] : [u, c];
      const mineOf = (x: typeof u) => (x === u ? values(n, step) : values(n, 100 + step));
      const p1 = first.swap(step, mineOf(first));
      await published(cfgSubject({ ...m, branch: first === u ? "uncond" : "cond" }, step));
      const [got1, got2] = await Promise.all([p1, second.swap(step, mineOf(second))]);
      assert.deepEqual(got1, mineOf(second));
      assert.deepEqual(got2, mineOf(first));
    }
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
    // Aborted while waiting for its peer (its own output is out): rejects with the abort's reason,
    // not the peer timeout (60 s by default).
    await published(cfgSubject({ jobId: "job-3", gang: "base_cfg", attempt: 1, branch: "uncond" }, 0));
    let settled = false;
    void p
      .catch(() => {})
      .finally(() => {
        settled = true;
      });
    await new Promise((r) => setImmediate(r));
    assert.equal(settled, false, "waits for its peer");
    ac.abort(new LavieError("cancelled", "stop"));
    await assert.rejects(p, (e: unknown) => e instanceof LavieError && e.code === "cancelled");
  });
});
