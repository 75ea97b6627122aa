/**
 * Load behaviour of the client API, over real gRPC against a coordinator on a real nats-server:
 * bounded queues per tenant and in all (RESOURCE_EXHAUSTED with a retry hint), fair start order
 * between tenants, priorities, queue positions streamed to watchers, per-job deadlines, and jobs
 * starting in the announced order once a runner appears.
 *
 * Tenants come from a small Authenticator here ("authorization: Bearer tenant:<name>"): the
 * service's tenancy is what is tested; the real API-key/JWT authenticator has its own tests.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import type { Authenticator } from "../../coordinator/api/auth.ts";
import { addJobService } from "../../coordinator/api/service.ts";
import { Coordinator } from "../../coordinator/server.ts";
import { LavieError } from "../../core/errors.ts";
import type { Principal } from "../../core/tenancy.ts";
import { JobPriority, JobService, type WatchJobResponse } from "../../gen/lavie/v1/jobs_pb.ts";
import { ensureModels } from "../../models/cache.ts";
import { createClient, serverStream, unary } from "../../transport/grpc/adapter.ts";
import { fromGrpcError } from "../../transport/grpc/status.ts";
import { connectNats, type NatsClients } from "../../transport/nats/connect.ts";
import { NatsTensorStore } from "../../transport/nats/tensors.ts";
import { metrics } from "../../transport/telemetry/metrics.ts";
import { startNatsServer } from "../support/nats-server.ts";
import { startNodeProcess } from "../support/process.ts";

type Nats = Awaited<ReturnType<typeof startNatsServer>>;
let nats: Nats;
let modelDir: string;
let coordinator: Coordinator;
let clients: NatsClients;
let server: grpc.Server;
let client: grpc.Client;
const children: ChildProcess[] = [];

const tenantAuth: Authenticator = {
  authenticate: async (md) => {
    const v = String(md.get("authorization")[0] ?? "");
    const m = /^Bearer tenant:([a-z0-9-]+)$/.exec(v);
    if (!m) throw new LavieError("unauthenticated", "no tenant");
    return { tenant: m[1]!, admin: false, method: "api-key", subject: m[1]! } satisfies Principal;
  },
};

const as = (tenant: string) => {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer tenant:${tenant}`);
  return { metadata };
};

const job = { prompt: "queued", stopAfter: "base", base: { steps: 1 } };

async function submit(
  tenant: string,
  extra: { idempotencyKey?: string; priority?: JobPriority; deadlineSeconds?: number; seed?: bigint } = {},
) {
  const { seed, ...rest } = extra;
  const res = await unary(
    client,
    JobService,
    "submitJob",
    { job: { ...job, seed: seed ?? 1n }, ...rest },
    as(tenant),
  );
  return res.job!;
}

/** Polls `cond` until it holds; fails after `ms` (a bound, not a timing check). */
async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function refused(p: Promise<unknown>): Promise<LavieError> {
  try {
    await p;
  } catch (err) {
    return fromGrpcError(err);
  }
  assert.fail("expected the call to be refused");
}

const position = async (tenant: string, id: string) =>
  (await unary(client, JobService, "getJob", { jobId: id }, as(tenant))).job!.queuePosition;

before(async () => {
  nats = await startNatsServer();
  modelDir = await ensureModels("tiny");
  clients = await connectNats(nats.url, { name: "admission-test" });
  coordinator = await Coordinator.start({
    natsUrl: nats.url,
    modelDir,
    maxRunningJobs: 1,
    maxQueuedJobs: 4,
    maxQueuedPerTenant: 3,
  });
  // The coordinator's job manager behind a second JobService that knows tenants.
  server = new grpc.Server();
  addJobService(server, coordinator.jobs, await NatsTensorStore.open(clients.objm), tenantAuth);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  client = createClient(JobService, `127.0.0.1:${port}`);
});

after(async () => {
  for (const c of children) c.kill("SIGKILL");
  client?.close();
  server?.forceShutdown();
  await coordinator?.stop();
  await clients?.close();
  await nats?.stop();
});

test("bounded queues, fair order, priorities, positions and deadlines; jobs start in the announced order", async () => {
  // No runner yet: the first job runs (its tasks wait for a runner); the others queue.
  const a1 = await submit("a");
  const a2 = await submit("a", { idempotencyKey: "a2" });
  const a3 = await submit("a");
  const a4 = await submit("a");

  // Tenant a has 3 waiting: its limit.
  const perTenant = await refused(submit("a"));
  assert.equal(perTenant.code, "resource_exhausted");
  assert.match(perTenant.message, /tenant "a" has 3 jobs waiting \(limit 3\)/);
  assert.ok(perTenant.retryable);
  assert.ok((perTenant.retryAfterMs ?? 0) >= 1000, `retry hint ${perTenant.retryAfterMs}`);

  // Fair share: b's first job goes ahead of a's backlog (a already has a job running).
  const b1 = await submit("b");
  assert.equal(await position("b", b1.id), 1);
  assert.deepEqual(await Promise.all([a2, a3, a4].map((j) => position("a", j.id))), [2, 3, 4]);

  // 4 waiting in all: the global limit, whoever asks.
  const global = await refused(submit("c"));
  assert.equal(global.code, "resource_exhausted");
  assert.match(global.message, /queue is full \(4 jobs waiting, limit 4\)/);
  assert.ok((global.retryAfterMs ?? 0) >= 1000);
  // Both refusals are counted, and the queue's depth is exported.
  const scrape = await metrics.registry.metrics();
  assert.match(scrape, /lavie_jobs_refused_total\{queue="tenant"\} 1\b/);
  assert.match(scrape, /lavie_jobs_refused_total\{queue="global"\} 1\b/);
  assert.match(scrape, /lavie_jobs_queued 4\b/);
  assert.match(scrape, /lavie_jobs_running 1\b/);

  // A retried submit of an accepted job still gets that job while the queue is full.
  const again = await unary(
    client,
    JobService,
    "submitJob",
    { job: { ...job, seed: 1n }, idempotencyKey: "a2" },
    as("a"),
  );
  assert.equal(again.created, false);
  assert.equal(again.job!.id, a2.id);

  // Priority: a high-priority job of a goes ahead of everything waiting; b's watcher is told it moved.
  const events: WatchJobResponse[] = [];
  const watching = (async () => {
    for await (const e of serverStream(client, JobService, "watchJob", { jobId: b1.id }, as("b")))
      events.push(e);
  })();
  await waitFor("b's first watch event", () => events.length > 0);
  await unary(client, JobService, "cancelJob", { jobId: a4.id }, as("a"));
  const high = await submit("a", { priority: JobPriority.HIGH, seed: 2n });
  assert.equal(high.priority, JobPriority.HIGH);
  assert.equal(await position("a", high.id), 1);
  assert.equal(await position("b", b1.id), 2);
  await waitFor("b told it moved to position 2", () =>
    events.some((e) => e.event.case === "queued" && e.event.value.position === 2),
  );
  const positions = events.flatMap((e) => (e.event.case === "queued" ? [e.event.value.position] : []));
  assert.deepEqual(positions.slice(0, 2), [1, 2], `b's queue positions: ${positions}`);

  // Unknown priorities and bad deadlines are refused, naming the field.
  const badPriority = await refused(submit("d", { priority: 9 as JobPriority }));
  assert.equal(badPriority.code, "invalid_argument");
  assert.equal(badPriority.field, "priority");
  const badDeadline = await refused(submit("d", { deadlineSeconds: -1 }));
  assert.equal(badDeadline.field, "deadline_seconds");

  // A deadline passes while the job waits: it fails with the reason, its watcher is told.
  await unary(client, JobService, "cancelJob", { jobId: a3.id }, as("a"));
  const late = await submit("d", { deadlineSeconds: 0.5 });
  assert.ok(late.deadlineUnixMs > 0n);
  let lastEvent: WatchJobResponse | undefined;
  // The stream ends with the job's failure (bounded: a watch that never ends fails the test).
  const watchLate = { ...as("d"), signal: AbortSignal.timeout(120_000) };
  for await (const e of serverStream(client, JobService, "watchJob", { jobId: late.id }, watchLate))
    lastEvent = e;
  assert.equal(lastEvent?.event.case, "failed");
  assert.match(
    String(lastEvent?.event.value && "reason" in lastEvent.event.value ? lastEvent.event.value.reason : ""),
    /deadline exceeded/,
  );

  // Tenant isolation: b cannot read or cancel a's job; listing shows only one's own jobs.
  const denied = await refused(unary(client, JobService, "getJob", { jobId: a2.id }, as("b")));
  assert.equal(denied.code, "permission_denied");
  const deniedCancel = await refused(unary(client, JobService, "cancelJob", { jobId: a2.id }, as("b")));
  assert.equal(deniedCancel.code, "permission_denied");
  const listB = await unary(client, JobService, "listJobs", {}, as("b"));
  assert.deepEqual(
    listB.jobs.map((j) => j.id),
    [b1.id],
  );
  assert.equal(
    (await refused(unary(client, JobService, "listJobs", { allTenants: true }, as("b")))).code,
    "permission_denied",
  );
  assert.equal(
    (await refused(unary(client, JobService, "getJob", { jobId: b1.id }))).code,
    "unauthenticated",
  );

  // A runner appears: jobs run one at a time in the announced order: a1 (running), high, b1, a2.
  const order = [high.id, b1.id, a2.id];
  const started: string[] = [];
  for (const id of order) {
    coordinator.jobs.subscribe(id, (e) => {
      if (e.type === "stage_started" && !started.includes(id)) started.push(id);
    });
  }
  const { child } = await startNodeProcess(
    "stage-runners/main.ts",
    { LAVIE_NATS_URL: nats.url, LAVIE_MODEL_DIR: modelDir, LAVIE_RUNNER_ID: "late", LAVIE_ORT_THREADS: "1" },
    /listening on/,
  );
  children.push(child);
  for (const id of [a1.id, ...order]) {
    await waitFor(
      `job ${id} to succeed`,
      async () => {
        const r = await coordinator.jobs.get(id);
        assert.ok(
          r.state === "queued" || r.state === "running" || r.state === "succeeded",
          `job ${id} ${r.state}: ${r.error}`,
        );
        return r.state === "succeeded";
      },
      300_000,
    );
  }
  assert.deepEqual(started, order);
  await watching;
  assert.equal(events.at(-1)?.event.case, "done");
});
