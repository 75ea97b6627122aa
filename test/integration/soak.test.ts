/**
 * Soak: a bounded run of many tiny jobs through a whole local cluster while runners are killed and
 * restarted and inject corrupt/wrong-shaped outputs, failures and hangs, with the coordinator's
 * queues full part of the time (test/support/soak.ts). Every job must end (none vanish), succeeded
 * jobs must equal the fault-free run tile for tile, and the coordinator's memory must stay bounded.
 * bench/reliability.ts runs the same soak larger and writes the figures to RELIABILITY.md.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { runSoak } from "../support/soak.ts";

test("hundreds of tiny jobs under faults: none vanish, none differ, memory stays bounded", async (t) => {
  const jobs = Number(process.env.LAVIE_SOAK_JOBS ?? 200);
  const r = await runSoak({ jobs, concurrency: 40, runners: 3, killEveryMs: 2500, seed: 6 });
  const summary = JSON.stringify({ ...r, failureReasons: r.failureReasons.slice(0, 5) });
  t.diagnostic(summary);
  assert.equal(r.vanished, 0, summary);
  assert.equal(r.succeeded + r.failed, jobs, summary);
  // Faults are retried elsewhere (8 attempts): a job fails only if one task drew faults 8 times.
  assert.ok(r.succeeded >= jobs * 0.95, summary);
  for (const reason of r.failureReasons) assert.match(reason, /\S/, "a failed job names its reason");
  assert.equal(r.tilesDiffering, 0, summary);
  assert.ok(r.tilesCompared >= r.succeeded, summary);
  // The faults really happened, and the queues really refused work.
  assert.ok(r.runnerKills >= 2, summary);
  assert.ok(Object.values(r.faultsInjected).reduce((a, b) => a + b, 0) >= 3, summary);
  assert.ok(r.admissionRefusals > 0, summary);
  // Memory: bounded, not growing with the number of jobs done (finished jobs leave memory).
  assert.ok(r.rssPeakMb < 600, summary);
  const [q1, , , q4] = r.rssByQuarterMb;
  if (q1 !== undefined && q4 !== undefined)
    assert.ok(q4 - q1 < 120, `RSS grew ${q1} -> ${q4} MB; ${summary}`);
});
