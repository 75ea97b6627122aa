/**
 * Autoscaling against a fake Kubernetes API server: a real nats-server, the coordinator in-process
 * with LAVIE_DISCOVERY=kubernetes semantics (EndpointSlices merged with the NATS registry) and the
 * autoscaler, and real stage-runner processes started and stopped by the fake's simulated
 * Deployment controller when the autoscaler changes a Deployment's replicas.
 *
 * Short windows: ticks every 150 ms, idle -> zero after 1.5 s, scale-down stabilisation 1 s.
 * The tests wait for conditions (replicas, job states, processes gone) with generous deadlines: a
 * loaded machine makes them slower, never wrong. Durations (cold starts) are reported, not asserted.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { appendFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { Coordinator } from "../../coordinator/server.ts";
import { ensureModels } from "../../models/cache.ts";
import { FakeKubeApiServer } from "../fakes/kube-apiserver.ts";
import { startNatsServer } from "../support/nats-server.ts";
import { childEnv } from "../support/process.ts";

type Nats = Awaited<ReturnType<typeof startNatsServer>>;
let nats: Nats;
let fake: FakeKubeApiServer;
let coordinator: Coordinator;
let modelDir: string;
const children = new Map<string, ChildProcess>();
/** Pods the fake ReplicaSet deleted while their runner had tasks in flight (must stay empty). */
const busyDeleted: string[] = [];
const logs: string[] = [];

const STAGES = ["base", "interpolation", "vsr"] as const;
const MAX: Record<string, number> = { base: 2, interpolation: 2, vsr: 2 };
const deploymentOf = (stage: string) => `lavie-runner-${stage}`;

async function startRunner(stage: string, pod: string): Promise<{ ip: string; port: number }> {
  const child = spawn(process.execPath, ["--import", "tsx", "stage-runners/main.ts"], {
    env: {
      ...childEnv(),
      LAVIE_NATS_URL: nats.url,
      LAVIE_MODEL_DIR: modelDir,
      LAVIE_RUNNER_STAGES: stage,
      LAVIE_RUNNER_ID: pod, // in Kubernetes: the pod name, from the downward API
      LAVIE_ORT_THREADS: "1",
      LAVIE_METRICS_PORT: "0",
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  children.set(pod, child);
  child.once("exit", () => children.delete(pod));
  let out = "";
  child.stdout!.setEncoding("utf8");
  const address = await new Promise<string>((resolve, reject) => {
    const onData = (s: string) => {
      out += s;
      const m = /listening on (\S+)/.exec(out);
      if (m) {
        child.stdout!.off("data", onData);
        child.stdout!.resume();
        resolve(m[1]!);
      }
    };
    child.stdout!.on("data", onData);
    child.once("exit", (code) => reject(new Error(`runner ${pod} exited with ${code} before ready`)));
  });
  const i = address.lastIndexOf(":");
  return { ip: address.slice(0, i), port: Number(address.slice(i + 1)) };
}

async function stopRunner(pod: string): Promise<void> {
  // The ReplicaSet picked this pod: it must not have work in flight.
  if ((coordinator.load().inFlightByRunner[pod] ?? 0) > 0) busyDeleted.push(pod);
  const child = children.get(pod);
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const kill = setTimeout(() => child.kill("SIGKILL"), 15_000);
    child.once("exit", () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill("SIGTERM"); // the runner drains: finishes in-flight tasks, deregisters, exits
  });
}

/** Polls `cond` until it holds; fails after `ms` (a bound so a broken run ends, not a timing check). */
async function until(what: string, cond: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) {
      const states = children.size === 0 ? "no runners" : `runners ${[...children.keys()].join(",")}`;
      throw new Error(`timed out after ${ms} ms waiting for ${what} (${states})`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function waitDone(id: string, ms: number): Promise<void> {
  await until(
    `job ${id}`,
    async () => {
      const r = await coordinator.jobs.get(id);
      if (r.state === "failed" || r.state === "cancelled")
        throw new Error(`job ${id} ${r.state}: ${r.error}`);
      return r.state === "succeeded";
    },
    ms,
  );
}

/** A small job: 4 base frames, one step per stage (3 + 7 + 7 tasks). */
const small = { frames: 4, base: { steps: 1 }, interpolation: { steps: 1 }, vsr: { steps: 1 } };
const allZero = () => STAGES.every((s) => fake.replicas(deploymentOf(s)) === 0);

before(async () => {
  nats = await startNatsServer();
  modelDir = await ensureModels("tiny");
  fake = await FakeKubeApiServer.start({ bookmarkMs: 1_000 });
  for (const stage of STAGES) {
    fake.addDeployment({
      name: deploymentOf(stage),
      podLabels: { "app.kubernetes.io/component": "runner", "lavie.dev/stage": stage },
      replicas: 0,
      startDelayMs: 50,
      startPod: (pod) => startRunner(stage, pod),
      stopPod: stopRunner,
    });
  }
  const policy = (stage: string) => ({
    min: 0,
    max: MAX[stage]!,
    slotsPerRunner: 1,
    idleSeconds: 1.5,
    downStabilizationSeconds: 1,
  });
  coordinator = await Coordinator.start({
    natsUrl: nats.url,
    modelDir,
    maxRunningJobs: 4,
    discovery: "kubernetes",
    kube: { config: fake.kubeConfig(), namespace: "default" },
    autoscaler: {
      deployments: Object.fromEntries(STAGES.map((s) => [s, deploymentOf(s)])),
      stages: Object.fromEntries(STAGES.map((s) => [s, policy(s)])),
      intervalMs: 150,
      log: (line) => {
        const l = `${new Date().toISOString()} ${line}`;
        logs.push(l);
        if (process.env.LAVIE_TEST_AUTOSCALER_LOG)
          appendFileSync(process.env.LAVIE_TEST_AUTOSCALER_LOG, `${l}\n`);
      },
    },
  });
});

after(async () => {
  const step = (s: string) => process.stderr.write(`autoscaler.test after: ${s}\n`);
  step("coordinator");
  await coordinator?.stop();
  step("children");
  for (const c of children.values()) c.kill("SIGKILL");
  step("fake");
  await fake?.stop();
  step("nats");
  await nats?.stop();
  step("done");
});

test("a job submitted with zero runners completes after scale from zero (cold start measured)", async (t) => {
  assert.ok(allZero());
  const t0 = Date.now();
  const { record } = await coordinator.jobs.submit({ prompt: "a panda playing guitar", seed: 1, ...small });
  await waitDone(record.id, 180_000);
  const a = coordinator.autoscaler!;
  const stages = a.coldStarts.map((c) => c.stage);
  for (const s of STAGES) assert.ok(stages.includes(s), `cold start of ${s} recorded (${stages.join(",")})`);
  for (const c of a.coldStarts) {
    assert.ok(c.ms >= 0, `${c.stage} cold start ${c.ms} ms`);
    t.diagnostic(`cold start ${c.stage}: ${c.ms} ms`);
  }
  t.diagnostic(`job from zero runners: ${Date.now() - t0} ms end to end`);
  // One runner per stage was enough for one job with 1 slot each... but never more than max.
  for (const ch of fake.scaleLog) assert.ok(ch.to <= MAX[ch.deployment.replace("lavie-runner-", "")]!);
});

test("idle stages scale back to zero after the window; their runners drain and exit", async () => {
  await until("all stages at zero", allZero, 60_000);
  await fake.settle();
  await until("runners exited", () => children.size === 0, 60_000);
  assert.deepEqual(busyDeleted, []);
});

test("a step of load scales the loaded stage up within bounds; a busy runner is never removed", async (t) => {
  const from = fake.scaleLog.length;
  const deletedFrom = fake.deletedPods.length;
  // Base-only jobs (stopAfter: base), so only the base stage gets work. Job A's base denoise is
  // long; B and C are short. The three queue three base text tasks at once.
  const [long, ...short] = await Promise.all([
    coordinator.jobs.submit({ prompt: "a long one", seed: 2, stopAfter: "base", base: { steps: 80 } }),
    coordinator.jobs.submit({
      prompt: "a short one",
      seed: 3,
      stopAfter: "base",
      frames: 4,
      base: { steps: 1 },
    }),
    coordinator.jobs.submit({
      prompt: "a short one",
      seed: 4,
      stopAfter: "base",
      frames: 4,
      base: { steps: 1 },
    }),
  ]);
  await until("base at max", () => fake.replicas(deploymentOf("base")) === MAX.base, 60_000);
  const first = fake.scaleLog.slice(from);
  assert.ok(
    first.every((c) => c.deployment === deploymentOf("base")),
    "only the loaded stage scaled so far",
  );
  assert.equal(fake.replicas(deploymentOf("interpolation")), 0, "stages without work stay at zero");

  // Once B's and C's base work is done, A's runner is the only busy one: 2 -> 1 removes the idle pod.
  await until(
    "base scale-down while A's base denoise runs",
    () => fake.scaleLog.slice(from).some((c) => c.deployment === deploymentOf("base") && c.to === 1),
    180_000,
  );
  const busy = Object.keys(coordinator.load().inFlightByRunner).filter((id) => id.includes("base"));
  const deleted = fake.deletedPods.slice(deletedFrom).filter((d) => d.deployment === deploymentOf("base"));
  t.diagnostic(
    `busy base runners ${busy.join(",")}; deleted ${deleted.map((d) => `${d.pod}(cost ${d.cost})`)}`,
  );
  assert.ok(deleted.length >= 1);
  for (const d of deleted) assert.ok(!busy.includes(d.pod), `busy pod ${d.pod} deleted`);
  for (const p of fake.podsOf(deploymentOf("base"))) {
    if (busy.includes(p.name))
      assert.equal(p.annotations["controller.kubernetes.io/pod-deletion-cost"], "10000");
  }

  await Promise.all([long!, ...short].map((j) => waitDone(j.record.id, 180_000)));
  assert.ok(
    fake.scaleLog.slice(from).every((c) => c.deployment === deploymentOf("base")),
    "base-only jobs scale only the base stage",
  );
  for (const ch of fake.scaleLog.slice(from)) {
    const stage = ch.deployment.replace("lavie-runner-", "");
    assert.ok(
      ch.to >= 0 && ch.to <= MAX[stage]!,
      `${ch.deployment} ${ch.from} -> ${ch.to} within 0..${MAX[stage]}`,
    );
  }
  assert.deepEqual(busyDeleted, [], "no pod was deleted with tasks in flight");
  t.diagnostic(`scale changes: ${fake.scaleLog.map((c) => `${c.deployment}:${c.from}->${c.to}`).join(" ")}`);
});

test("afterwards everything idles back to zero", async () => {
  await until("all stages at zero", allZero, 60_000);
  await fake.settle();
  await until("runners exited", () => children.size === 0, 60_000);
  assert.deepEqual(busyDeleted, []);
});
