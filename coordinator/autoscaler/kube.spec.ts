import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { FakeKubeApiServer } from "../../test/fakes/kube-apiserver.ts";
import type { DispatcherLoad } from "../distributed/dispatcher.ts";
import type { RunnerInfo } from "../distributed/ports.ts";
import { Autoscaler, BUSY_COST, DELETION_COST, IDLE_COST, KubeScaleTarget } from "./kube.ts";

let fake: FakeKubeApiServer;
before(async () => {
  fake = await FakeKubeApiServer.start();
});
after(async () => {
  await fake.stop();
});

const labels = (stage: string) => ({ "app.kubernetes.io/component": "runner", "lavie.dev/stage": stage });
let nextIp = 1;
const startPod = async () => ({ ip: `10.1.0.${nextIp++}`, port: 7000 });

test("KubeScaleTarget: scale subresource get/put with optimistic concurrency; pod deletion cost", async () => {
  fake.addDeployment({ name: "runner-base", podLabels: labels("base"), startPod });
  const t = new KubeScaleTarget(fake.kubeConfig(), {
    namespace: "default",
    deployments: { base: "runner-base" },
  });
  const s0 = await t.getReplicas("base");
  assert.equal(s0.replicas, 0);
  await t.setReplicas("base", 3, s0.version);
  await assert.rejects(t.setReplicas("base", 1, s0.version), (e: { code?: number }) => e.code === 409);
  await fake.settle();
  assert.equal((await t.getReplicas("base")).replicas, 3);
  const pods = fake.podsOf("runner-base");
  assert.equal(pods.length, 3);
  const busyPod = pods[0]!.name;
  const ranks = await t.rankPods("base", { ids: new Set([busyPod]), addresses: new Set() });
  assert.deepEqual(
    ranks.map((r) => [r.pod, r.busy]),
    pods.map((p) => [p.name, p.name === busyPod]),
  );
  for (const p of fake.podsOf("runner-base")) {
    assert.equal(p.annotations[DELETION_COST], p.name === busyPod ? BUSY_COST : IDLE_COST);
  }
  // The fake ReplicaSet removes the cheapest pods: the busy one survives a scale to 1.
  const v = (await t.getReplicas("base")).version;
  await t.setReplicas("base", 1, v);
  await fake.settle();
  assert.deepEqual(
    fake.podsOf("runner-base").map((p) => p.name),
    [busyPod],
  );
  assert.ok(
    fake.requests.some((r) =>
      r.startsWith("PUT /apis/apps/v1/namespaces/default/deployments/runner-base/scale"),
    ),
  );
  assert.ok(fake.requests.some((r) => r.startsWith("PATCH /api/v1/namespaces/default/pods/")));
  await assert.rejects(
    new KubeScaleTarget(fake.kubeConfig(), {
      namespace: "default",
      deployments: { vsr: "nope" },
    }).getReplicas("vsr"),
    (e: { code?: number }) => e.code === 404,
  );
});

test("Autoscaler: scales the loaded stage, records the cold start, keeps busy runners", async () => {
  fake.addDeployment({ name: "runner-vsr", podLabels: labels("vsr"), startPod, startDelayMs: 30 });
  fake.addDeployment({ name: "runner-interp", podLabels: labels("interpolation"), startPod });
  let load: DispatcherLoad = {
    queued: { vsr: 3 },
    queuedGang: {},
    inFlight: {},
    inFlightByRunner: {},
    jobs: [],
  };
  let runners: RunnerInfo[] = [];
  const policy = { min: 0, max: 2, slotsPerRunner: 1, idleSeconds: 0, downStabilizationSeconds: 0 };
  const lines: string[] = [];
  const a = new Autoscaler(
    new KubeScaleTarget(fake.kubeConfig(), {
      namespace: "default",
      deployments: { vsr: "runner-vsr", interpolation: "runner-interp" },
    }),
    { load: () => load },
    { list: () => runners },
    { stages: { vsr: policy, interpolation: policy }, log: (l) => lines.push(l) },
  );
  await a.tick();
  assert.equal(fake.replicas("runner-vsr"), 2, "clamped to max");
  assert.equal(fake.replicas("runner-interp"), 0, "the idle stage stays at zero");
  await fake.settle();
  const pods = fake.podsOf("runner-vsr").map((p) => p.name);
  runners = pods.map((id) => ({
    id,
    address: `x:${id}`,
    stages: ["vsr"],
    models: [],
    slots: 1,
    freeSlots: 1,
  }));
  load = { queued: {}, queuedGang: {}, inFlight: { vsr: 1 }, inFlightByRunner: { [pods[1]!]: 1 }, jobs: [] };
  await a.tick();
  assert.equal(a.coldStarts.length, 1);
  assert.equal(a.coldStarts[0]!.stage, "vsr");
  assert.equal(fake.replicas("runner-vsr"), 1);
  await fake.settle();
  assert.deepEqual(
    fake.podsOf("runner-vsr").map((p) => p.name),
    [pods[1]],
    "the busy pod stays",
  );
  load = { queued: {}, queuedGang: {}, inFlight: {}, inFlightByRunner: {}, jobs: [] };
  await a.tick();
  assert.equal(fake.replicas("runner-vsr"), 0);
  assert.deepEqual(
    a.events.map((e) => `${e.stage}:${e.from}->${e.to}`),
    ["vsr:0->2", "vsr:2->1", "vsr:1->0"],
  );
  assert.ok(lines.some((l) => l.includes("cold start")));
});
