import assert from "node:assert/strict";
import { test } from "node:test";
import { fairOrder, type QueueEntry } from "./scheduling.ts";

const e = (tenant: string, seq: number, rank = 1): QueueEntry & { id: string } => ({
  id: `${tenant}${seq}`,
  tenant,
  rank,
  seq,
});

test("tenants take turns: one tenant's backlog does not hold back another's single job", () => {
  const q = [e("a", 1), e("a", 2), e("a", 3), e("a", 4), e("b", 5), e("c", 6)];
  assert.deepEqual(
    fairOrder(q, new Map()).map((x) => x.id),
    ["a1", "b5", "c6", "a2", "a3", "a4"],
  );
});

test("a tenant with work running waits its turn behind tenants with none", () => {
  const q = [e("a", 1), e("b", 2), e("a", 3)];
  assert.deepEqual(
    fairOrder(q, new Map([["a", 2]])).map((x) => x.id),
    ["b2", "a1", "a3"],
  );
});

test("higher priority first, then fair share, then submit order", () => {
  const q = [e("a", 1, 1), e("b", 2, 0), e("a", 3, 2), e("b", 4, 1), e("a", 5, 1)];
  assert.deepEqual(
    fairOrder(q, new Map()).map((x) => x.id),
    ["a3", "a1", "b4", "a5", "b2"],
  );
});

test("the input is not modified and an empty queue orders to nothing", () => {
  const q = [e("b", 2), e("a", 1)];
  fairOrder(q, new Map());
  assert.deepEqual(
    q.map((x) => x.id),
    ["b2", "a1"],
  );
  assert.deepEqual(fairOrder([], new Map()), []);
});

test("within a round, the tenant served least recently goes first", () => {
  const q = [e("a", 1), e("b", 2), e("c", 3)];
  assert.deepEqual(
    fairOrder(
      q,
      new Map(),
      new Map([
        ["a", 5],
        ["c", 2],
      ]),
    ).map((x) => x.id),
    ["b2", "c3", "a1"],
  );
});
