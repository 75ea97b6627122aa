import assert from "node:assert/strict";
import { test } from "node:test";
import {
  decide,
  initialState,
  type StageLoad,
  type StagePolicy,
  type StageState,
  validatePolicy,
} from "./policy.ts";

const policy: StagePolicy = {
  min: 0,
  max: 4,
  slotsPerRunner: 2,
  idleSeconds: 10,
  downStabilizationSeconds: 30,
};

/** A stage driven tick by tick with a fake clock (1 s ticks); applies each decision. */
class Sim {
  now = 1_000_000;
  replicas = 0;
  state: StageState = initialState();
  readonly log: number[] = [];
  constructor(readonly p: StagePolicy = policy) {}
  tick(load: Partial<StageLoad>, seconds = 1): number {
    const d = decide(
      this.p,
      { queued: 0, inFlight: 0, busyRunners: 0, ...load },
      this.replicas,
      this.state,
      this.now,
    );
    this.state = d.state;
    this.replicas = d.replicas;
    this.log.push(d.replicas);
    this.now += seconds * 1000;
    return d.replicas;
  }
}

test("a step of load scales up at once, within max", () => {
  const s = new Sim();
  assert.equal(s.tick({}), 0);
  assert.equal(s.tick({ queued: 5 }), 3); // ceil(5 / 2)
  assert.equal(s.tick({ queued: 20 }), 4); // clamped to max
  assert.equal(s.tick({ queued: 100, inFlight: 8, busyRunners: 4 }), 4);
});

test("scale from zero is immediate; one queued task gives one runner", () => {
  const s = new Sim();
  const d = decide(policy, { queued: 1, inFlight: 0, busyRunners: 0 }, 0, initialState(), 0);
  assert.equal(d.replicas, 1);
  assert.equal(d.reason, "scale-from-zero");
  assert.equal(s.tick({ inFlight: 1, busyRunners: 1 }), 1);
});

test("idle scales to zero only after idleSeconds (and the stabilisation window)", () => {
  const p = { ...policy, idleSeconds: 10, downStabilizationSeconds: 5 };
  const s = new Sim(p);
  s.tick({ queued: 2 });
  assert.equal(s.replicas, 1);
  for (let i = 0; i < 10; i++) assert.equal(s.tick({}), 1, `tick ${i}: still within idleSeconds`);
  // idle for 10 s now; the window still holds desired=1 values for 5 s more.
  const zeroAt = s.log.length;
  while (s.tick({}) !== 0) assert.ok(s.log.length - zeroAt < 10, "reaches zero");
  assert.ok(s.log.length - zeroAt >= 5, "not before the stabilisation window passed");
});

test("oscillating load does not flap", () => {
  const s = new Sim({ ...policy, downStabilizationSeconds: 30 });
  for (let i = 0; i < 60; i++) s.tick(i % 4 < 2 ? { queued: 8 } : { queued: 1, inFlight: 1, busyRunners: 1 });
  const changes = s.log.filter((v, i) => i > 0 && v !== s.log[i - 1]).length;
  assert.equal(changes, 0, `replicas changed ${changes} times: ${s.log.join(",")}`);
  assert.equal(s.replicas, 4);
  // After the load settles low, scale-down happens once the window has passed, in one step.
  for (let i = 0; i < 40; i++) s.tick({ queued: 0, inFlight: 1, busyRunners: 1 });
  assert.equal(s.replicas, 1);
  const tail = s.log.slice(60);
  assert.equal(new Set(tail).size, 2, `one step down: ${tail.join(",")}`);
});

test("min and max are respected", () => {
  const s = new Sim({ ...policy, min: 2, max: 3, idleSeconds: 0, downStabilizationSeconds: 0 });
  assert.equal(s.tick({}), 2, "min with no work");
  assert.equal(s.tick({ queued: 50 }), 3, "max under load");
  assert.equal(s.tick({}), 2, "back to min, not zero");
  assert.throws(() => validatePolicy({ ...policy, min: 5, max: 2 }), /min/);
  assert.throws(() => validatePolicy({ ...policy, slotsPerRunner: 0 }), /slotsPerRunner/);
});

test("never below the runners with work in flight", () => {
  const d = decide(
    { ...policy, max: 2, downStabilizationSeconds: 0 },
    { queued: 0, inFlight: 3, busyRunners: 3 },
    3,
    initialState(),
    0,
  );
  assert.equal(d.replicas, 3, "max lowered to 2 under 3 busy runners: keep them");
  const e = decide(
    { ...policy, downStabilizationSeconds: 0 },
    { queued: 0, inFlight: 2, busyRunners: 2 },
    4,
    initialState(),
    0,
  );
  assert.equal(e.replicas, 2, "ceil(2/2)=1 but two runners are busy");
});

test("a waiting CFG gang asks for two distinct runners", () => {
  const d = decide(policy, { queued: 2, inFlight: 0, busyRunners: 0, minRunners: 2 }, 0, initialState(), 0);
  assert.equal(d.replicas, 2);
});

test("upcoming work keeps (or pre-warms) one runner and is not idle", () => {
  const p = { ...policy, idleSeconds: 1, downStabilizationSeconds: 0 };
  const s = new Sim(p);
  assert.equal(s.tick({ upcoming: 5 }), 1, "pre-warmed from zero");
  for (let i = 0; i < 10; i++)
    assert.equal(s.tick({ upcoming: 5 }), 1, "held while the job needs the stage later");
  assert.equal(s.tick({ queued: 6, upcoming: 5 }), 3, "ready work scales as usual");
  s.tick({});
  s.tick({});
  assert.equal(s.tick({}), 0, "gone once nothing is upcoming and the idle window passed");
});
