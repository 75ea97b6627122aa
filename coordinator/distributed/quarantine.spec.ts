import assert from "node:assert/strict";
import { test } from "node:test";
import { ManualClock, settle } from "../../core/clock.ts";
import { LavieError } from "../../core/errors.ts";
import type { JobSpec } from "../../core/job.ts";
import type { TextTask } from "../plan/types.ts";
import { Dispatcher } from "./dispatcher.ts";
import type { RunnerClient, RunnerInfo, TaskCall, TensorRef } from "./ports.ts";
import { QuarantinePolicy, runnerFault } from "./quarantine.ts";

test("policy: N runner faults within the window quarantine a runner for a while, once", () => {
  const q = new QuarantinePolicy({ failures: 3, windowMs: 1_000, quarantineMs: 5_000 });
  assert.equal(q.failure("a", "data_loss", 0), null);
  assert.equal(q.failure("a", "internal", 100), null);
  assert.deepEqual(q.failure("a", "stalled", 200), { id: "a", untilMs: 5_200, reason: "stalled" });
  assert.equal(q.isQuarantined("a", 5_199), true);
  assert.equal(q.failure("a", "data_loss", 300), null, "no second quarantine while held");
  assert.deepEqual(
    q.list(1_000).map((x) => x.id),
    ["a"],
  );
  assert.equal(q.total, 1);
  // Ended: tasks again, and the count starts from zero.
  assert.equal(q.isQuarantined("a", 5_200), false);
  assert.deepEqual(q.list(5_200), []);
  assert.equal(q.failure("a", "data_loss", 5_300), null);
  assert.equal(q.failure("a", "data_loss", 5_400), null);
  assert.notEqual(q.failure("a", "data_loss", 5_500), null);
});

test("policy: failures outside the window and a success in between do not add up", () => {
  const q = new QuarantinePolicy({ failures: 2, windowMs: 1_000, quarantineMs: 5_000 });
  q.failure("a", "internal", 0);
  assert.equal(q.failure("a", "internal", 1_000), null, "the first one left the window");
  q.success("a");
  assert.equal(q.failure("a", "internal", 1_100), null, "a success reset the count");
  assert.notEqual(q.failure("a", "internal", 1_200), null);
  assert.equal(q.failure("b", "internal", 1_200), null, "per runner");
  const off = new QuarantinePolicy({ failures: 0 });
  for (let i = 0; i < 10; i++) assert.equal(off.failure("a", "data_loss", i), null);
  assert.throws(() => new QuarantinePolicy({ failures: -1 }), /quarantine.failures/);
});

test("only runner faults count: bad output, internal, stalls; not cancellations or job errors", () => {
  assert.equal(runnerFault("data_loss", false), "data_loss");
  assert.equal(runnerFault("internal", false), "internal");
  assert.equal(runnerFault("cancelled", true), "stalled");
  for (const c of [
    "cancelled",
    "unavailable",
    "invalid_argument",
    "failed_precondition",
    "resource_exhausted",
  ] as const)
    assert.equal(runnerFault(c, false), null, c);
});

const runner = (id: string): RunnerInfo => ({
  id,
  address: `${id}:1`,
  stages: ["base"],
  models: [],
  slots: 4,
  freeSlots: 4,
});
const text = (id: string): TextTask => ({
  id,
  kind: "text",
  stage: "base",
  deps: [],
  output: { tensor: "text.base", tile: 0 },
  units: 1,
  networks: ["base_text"] as unknown as TextTask["networks"],
  prompts: ["", "x"],
});
const ref = (object: string): TensorRef => ({ object, dtype: "float32", shape: [1], digest: "d", bytes: 4 });
/** grpc-js's refused connection, as transport/grpc/status.ts hands it on: never reached the runner. */
const refused = () =>
  new LavieError("unavailable", "No connection established. Last error: connect ECONNREFUSED 127.0.0.1:1", {
    undelivered: true,
  });

/** A runner client whose runner "bad" returns bad outputs (data_loss) and the others succeed. */
function client(
  behaviour: (runner: string, call: TaskCall) => Promise<TensorRef>,
): RunnerClient & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    execute: (r, call) => {
      calls.push(r.id);
      return behaviour(r.id, call);
    },
  };
}

function submit(d: Dispatcher, id: string) {
  return d.submit({
    jobId: "job",
    task: text(id),
    spec: {} as JobSpec,
    inputs: [],
    outputObject: `job/${id}`,
    onProgress: () => {},
    signal: new AbortController().signal,
  });
}

test("dispatcher: a runner returning bad outputs is quarantined after 3, its tasks retried elsewhere; back afterwards", async () => {
  const live = [runner("bad"), runner("good")];
  const quarantined: string[] = [];
  const c = client(async (r, call) => {
    if (r === "bad") throw new LavieError("data_loss", "digest mismatch");
    return ref(call.outputObject);
  });
  const logs: string[] = [];
  const clock = new ManualClock();
  const d = new Dispatcher({ list: () => live }, c, {
    clock,
    pollMs: 5,
    quarantine: { failures: 3, windowMs: 10_000, quarantineMs: 300 },
    observer: { runnerQuarantined: (id) => quarantined.push(id) },
    log: (l) => logs.push(l),
  });
  // One slot each: "bad" takes the next queued task after each failure (ties prefer it).
  live[0] = { ...live[0]!, slots: 1 };
  live[1] = { ...live[1]!, slots: 1 };
  const results = await clock.until(Promise.all(Array.from({ length: 6 }, (_, i) => submit(d, `t${i}`))));
  assert.deepEqual(
    // Outputs are named per attempt (<object>.<attempt>): the task, whatever attempt won.
    results.map((r) => r.object.replace(/\.\d+$/, "")),
    Array.from({ length: 6 }, (_, i) => `job/t${i}`),
    "every task succeeded elsewhere",
  );
  assert.equal(c.calls.filter((r) => r === "bad").length, 3, "bad got exactly 3 attempts, then no more");
  assert.deepEqual(quarantined, ["bad"]);
  assert.equal(logs.length, 1, "logged once");
  assert.match(logs[0]!, /runner bad quarantined for 300 ms after 3 failures \(last: data_loss/);
  assert.deepEqual(d.stats().quarantined, ["bad"]);
  assert.equal(d.stats().quarantines, 1);
  assert.deepEqual(Object.keys(d.load().quarantined ?? {}), ["bad"]);
  // While quarantined, "bad" gets nothing even with "good" full.
  const before = c.calls.length;
  await clock.until(submit(d, "u0"));
  assert.deepEqual(c.calls.slice(before), ["good"]);
  // Quarantine over: "bad" (now healthy) gets tasks again.
  const endsAt = d.load().quarantined?.bad ?? Number.NaN;
  assert.ok(endsAt > clock.now() && endsAt <= clock.now() + 300, `ends at ${endsAt}`);
  await clock.advance(endsAt - clock.now() - 1);
  assert.deepEqual(d.stats().quarantined, ["bad"], "held until the quarantine's last millisecond");
  await clock.advance(1);
  assert.deepEqual(d.stats().quarantined, []);
  const healed = client(async (_r, call) => ref(call.outputObject));
  const d2calls = healed.calls;
  (d as unknown as { client: RunnerClient }).client = healed;
  await clock.until(Promise.all([submit(d, "v0"), submit(d, "v1")]));
  assert.ok(d2calls.includes("bad"), `bad is used again: ${d2calls.join(",")}`);
  d.close();
});

test("dispatcher: cancellations, job-level errors and successes in between do not quarantine", async () => {
  const live = [runner("a")];
  let mode: "invalid" | "ok" | "internal" = "invalid";
  const c = client(async (_r, call) => {
    if (mode === "invalid") throw new LavieError("invalid_argument", "bad spec");
    if (mode === "internal") throw new LavieError("internal", "boom", { retryable: true });
    return ref(call.outputObject);
  });
  const clock = new ManualClock();
  const d = new Dispatcher({ list: () => live }, c, {
    clock,
    pollMs: 5,
    maxAttempts: 2,
    quarantine: { failures: 3, windowMs: 10_000, quarantineMs: 10_000 },
  });
  for (let i = 0; i < 4; i++) await assert.rejects(clock.until(submit(d, `i${i}`)), /bad spec/);
  // Job cancelled while running: not the runner's fault.
  const job = new AbortController();
  const hang = client(
    (_r, call) =>
      new Promise((_, reject) =>
        call.signal.addEventListener("abort", () => reject(new LavieError("cancelled", "aborted"))),
      ),
  );
  (d as unknown as { client: RunnerClient }).client = hang;
  for (let i = 0; i < 4; i++) {
    const p = d.submit({
      jobId: "job",
      task: text(`c${i}`),
      spec: {} as JobSpec,
      inputs: [],
      outputObject: `job/c${i}`,
      onProgress: () => {},
      signal: job.signal,
    });
    await settle();
    if (i === 3) job.abort();
    if (i === 3) await assert.rejects(clock.until(p), /cancelled/);
    else void p.catch(() => {});
  }
  (d as unknown as { client: RunnerClient }).client = c;
  // internal, internal (2 attempts: fails), success, internal, internal: never 3 in a row.
  mode = "internal";
  await assert.rejects(clock.until(submit(d, "x0")), /failed after 2 attempt\(s\): boom/);
  mode = "ok";
  await clock.until(submit(d, "x1"));
  mode = "internal";
  await assert.rejects(clock.until(submit(d, "x2")), /boom/);
  assert.deepEqual(d.stats().quarantined, []);
  mode = "ok";
  await clock.until(submit(d, "x3"));
  d.close();
});

test("dispatcher: a stalled runner counts; progress deadline moves the task and quarantines at 2", async () => {
  const live = [runner("stuck"), runner("fine")].map((r) => ({ ...r, slots: 1 }));
  const clock = new ManualClock();
  const c = client((r, call) =>
    r === "stuck"
      ? new Promise((_, reject) =>
          call.signal.addEventListener("abort", () => reject(new LavieError("cancelled", "aborted"))),
        )
      : clock.sleep(60).then(() => ref(call.outputObject)),
  );
  const d = new Dispatcher({ list: () => live }, c, {
    clock,
    pollMs: 5,
    progressTimeoutMs: 40,
    suspectMs: 0,
    quarantine: { failures: 2, windowMs: 10_000, quarantineMs: 10_000 },
  });
  const out = await clock.until(
    Promise.all([submit(d, "s0"), submit(d, "s1"), submit(d, "s2"), submit(d, "s3")]),
  );
  assert.equal(out.length, 4);
  assert.equal(c.calls.filter((r) => r === "stuck").length, 2);
  assert.deepEqual(d.stats().quarantined, ["stuck"]);
  d.close();
});

test("dispatcher: a runner that cannot be reached at all does not use up the task's attempts", async () => {
  const live = [runner("dead"), runner("alive")].map((r) => ({ ...r, slots: 1 }));
  const c = client(async (r, call) => {
    if (r === "dead") throw refused();
    return ref(call.outputObject);
  });
  const clock = new ManualClock();
  const d = new Dispatcher({ list: () => live }, c, { clock, pollMs: 5, maxAttempts: 1 });
  const out = await clock.until(submit(d, "t0"));
  assert.equal(out.object, "job/t0.1", "still the first attempt");
  assert.deepEqual(c.calls, ["dead", "alive"]);
  assert.equal(d.stats().retried, 0, "not counted as a retry");
  // A runner that dies mid-task (unavailable, but delivered) does use one up, whatever the text says.
  const d2 = new Dispatcher(
    { list: () => live },
    client(async (r, call) => {
      if (r === "dead") throw new LavieError("unavailable", "No connection established (mid-task)");
      return ref(call.outputObject);
    }),
    { clock, pollMs: 5, maxAttempts: 1 },
  );
  await assert.rejects(
    clock.until(submit(d2, "t1")),
    /failed after 1 attempt\(s\): No connection established \(mid-task\)/,
  );
  d.close();
  d2.close();
});

test("dispatcher: a runner listed but never reachable cannot hold a task forever", async () => {
  const live = [{ ...runner("ghost"), slots: 1 }];
  const c = client(async () => {
    throw refused();
  });
  const clock = new ManualClock();
  const d = new Dispatcher({ list: () => live }, c, { clock, pollMs: 5, maxAttempts: 2, suspectMs: 0 });
  await assert.rejects(
    clock.until(submit(d, "t0")),
    /failed after 2 attempt\(s\): No connection established/,
  );
  // 5 undelivered calls per allowed attempt are free; then they count as attempts.
  assert.equal(c.calls.length, 2 * 5 + 2);
  d.close();
});
