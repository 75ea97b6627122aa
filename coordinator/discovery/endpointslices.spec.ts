import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { FakeKubeApiServer } from "../../test/fakes/kube-apiserver.ts";
import type { RunnerInfo } from "../distributed/ports.ts";
import { EndpointSliceDirectory, MergedDirectory, runnersOfSlice } from "./endpointslices.ts";

let fake: FakeKubeApiServer;
before(async () => {
  fake = await FakeKubeApiServer.start({ bookmarkMs: 200 });
});
after(async () => {
  await fake.stop();
});

const runnerLabels = (stage: string) => ({
  "app.kubernetes.io/component": "runner",
  "lavie.dev/stage": stage,
});

async function until(what: string, cond: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test("runnersOfSlice: ready endpoints, grpc port, stage label, slots annotation", () => {
  const rs = runnersOfSlice({
    addressType: "IPv4",
    metadata: {
      name: "s",
      labels: { "lavie.dev/stage": "base,vsr" },
      annotations: { "lavie.dev/slots": "3" },
    },
    ports: [
      { name: "metrics", port: 9090 },
      { name: "grpc", port: 7000 },
    ],
    endpoints: [
      { addresses: ["10.0.0.1"], conditions: { ready: true }, targetRef: { kind: "Pod", name: "pod-a" } },
      { addresses: ["10.0.0.2"], conditions: { ready: false, terminating: true } },
      { addresses: ["10.0.0.3"] },
    ],
  });
  assert.deepEqual(
    rs.map((r) => [r.id, r.address, r.stages.join("+"), r.slots]),
    [
      ["pod-a", "10.0.0.1:7000", "base+vsr", 3],
      ["10.0.0.3", "10.0.0.3:7000", "base+vsr", 3],
    ],
  );
  assert.deepEqual(runnersOfSlice({ addressType: "IPv4", endpoints: [], metadata: { name: "x" } }), []);
});

test("list + watch follow ADDED / MODIFIED / DELETED, filter by label, relist after 410", async () => {
  fake.setEndpoints("base-1", runnerLabels("base"), 7001, [{ ip: "10.0.0.1", pod: "base-a" }]);
  fake.setEndpoints("other", { app: "something-else" }, 80, [{ ip: "10.0.0.9" }]);
  let changes = 0;
  const dir = await EndpointSliceDirectory.start(fake.kubeConfig(), {
    namespace: "default",
    retryMs: 50,
    onChange: () => changes++,
    log: () => {},
  });
  try {
    const ids = () =>
      dir
        .list()
        .map((r: RunnerInfo) => `${r.id}@${r.address}/${r.stages.join("+")}`)
        .sort()
        .join(" ");
    assert.equal(ids(), "base-a@10.0.0.1:7001/base", "the initial list");
    fake.setEndpoints("vsr-1", runnerLabels("vsr"), 7002, [{ ip: "10.0.0.2", pod: "vsr-a" }], {
      annotations: { "lavie.dev/slots": "2" },
    });
    await until("ADDED", () => ids().includes("vsr-a"));
    assert.equal(dir.list().find((r) => r.id === "vsr-a")?.slots, 2);
    fake.setEndpoints("base-1", runnerLabels("base"), 7001, [
      { ip: "10.0.0.1", pod: "base-a", ready: false },
      { ip: "10.0.0.3", pod: "base-b" },
    ]);
    await until("MODIFIED", () => ids() === "base-b@10.0.0.3:7001/base vsr-a@10.0.0.2:7002/vsr");
    fake.deleteSlice("vsr-1");
    await until("DELETED", () => ids() === "base-b@10.0.0.3:7001/base");
    const lists = () =>
      fake.requests.filter((q) => q.includes("/endpointslices?") && !q.includes("watch=")).length;
    const listsBefore = lists();
    fake.dropWatches(); // the change below happens while the client is not watching...
    fake.setEndpoints("vsr-2", runnerLabels("vsr"), 7004, [{ ip: "10.0.0.4", pod: "vsr-b" }]);
    fake.compact(); // ...and its history is gone: the resumed watch gets 410 Gone
    await until("the relist", () => lists() > listsBefore);
    await until("the new slice", () => ids().includes("vsr-b"));
    assert.ok(changes >= 4);
    assert.ok(fake.requests.some((r) => r.includes("watch=true") && r.includes("labelSelector=")));
  } finally {
    dir.stop();
    fake.deleteSlice("base-1");
    fake.deleteSlice("vsr-2");
    fake.deleteSlice("other");
  }
});

test("MergedDirectory: the first source wins for the same id or address", () => {
  const r = (id: string, address: string, models: string[] = []): RunnerInfo => ({
    id,
    address,
    stages: ["base"],
    models,
    slots: 1,
    freeSlots: 1,
  });
  const nats = { list: () => [r("a", "10.0.0.1:1", ["unet"])] };
  const k8s = { list: () => [r("a", "10.0.0.1:1"), r("b", "10.0.0.2:1"), r("10.0.0.1", "10.0.0.1:1")] };
  const m = new MergedDirectory([nats, k8s]).list();
  assert.deepEqual(
    m.map((x) => [x.id, x.models.length]),
    [
      ["a", 1],
      ["b", 0],
    ],
  );
});
