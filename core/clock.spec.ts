import assert from "node:assert/strict";
import { test } from "node:test";
import { ManualClock, settle, systemClock } from "./clock.ts";

test("a manual clock runs timers in due order, at their due time, only when advanced", async () => {
  const clock = new ManualClock(1_000);
  const ran: [string, number][] = [];
  const at = (name: string) => () => ran.push([name, clock.now()]);
  clock.setTimeout(at("c"), 30);
  clock.setTimeout(at("a"), 10);
  clock.setTimeout(at("b"), 10);
  clock.setTimeout(at("never"), 50).cancel();
  await settle();
  assert.equal(ran.length, 0, "nothing runs until time moves");
  await clock.advance(20);
  assert.deepEqual(ran, [
    ["a", 1_010],
    ["b", 1_010],
  ]);
  assert.equal(clock.now(), 1_020);
  await clock.advance(100);
  assert.deepEqual(
    ran.map(([n]) => n),
    ["a", "b", "c"],
  );
  assert.equal(clock.pending, 0);
});

test("timers set by timers and promise callbacks run within the same advance when due", async () => {
  const clock = new ManualClock(0);
  const seen: number[] = [];
  const loop = async () => {
    for (let i = 0; i < 3; i++) {
      await clock.sleep(10);
      seen.push(clock.now());
    }
  };
  const done = loop();
  await clock.advance(25);
  assert.deepEqual(seen, [10, 20]);
  await clock.advance(5);
  await done;
  assert.deepEqual(seen, [10, 20, 30]);
});

test("sleep rejects with the abort reason; until drives time and gives up after maxMs", async () => {
  const clock = new ManualClock(0);
  assert.equal(new ManualClock().now(), Date.UTC(2024, 0, 1));
  const ac = new AbortController();
  const s = clock.sleep(1_000, ac.signal);
  ac.abort(new Error("stop"));
  await assert.rejects(s, /stop/);
  assert.equal(clock.pending, 0, "the aborted sleep's timer is cancelled");
  await assert.rejects(clock.sleep(1, AbortSignal.abort(new Error("before"))), /before/);

  assert.equal(
    await clock.until(
      clock.sleep(250).then(() => "woke"),
      100,
    ),
    "woke",
  );
  assert.equal(clock.now(), 300);
  await assert.rejects(clock.until(new Promise(() => {}), 10, 100, "forever"), {
    code: "deadline_exceeded",
    message: /forever did not settle within 100 ms/,
  });
  await assert.rejects(clock.until(Promise.reject(new Error("no"))), /no/);
});

test("the system clock is Date.now and real timers", async () => {
  const before = Date.now();
  assert.ok(systemClock.now() >= before);
  let ran = false;
  systemClock.setTimeout(() => {
    ran = true;
  }, 0);
  await systemClock.sleep(1);
  await new Promise((r) => setImmediate(r));
  assert.ok(ran);
  const t = systemClock.setTimeout(() => assert.fail("cancelled"), 0).unref();
  t.cancel();
  await systemClock.sleep(5);
});
