/**
 * The distributed deployment end to end, all on loopback: nats-server, the coordinator and a stage
 * runner as separate processes (startCluster, as `lavie cluster up` runs them); jobs submitted
 * through the SDK (LavieClient) and the CLI (`lavie generate --server`), the MP4 fetched and decoded.
 * Set LAVIE_TEST_VERBOSE=1 to see the processes' logs.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { type Cluster, startCluster } from "../../client/cluster/index.ts";
import { type JobEvent, type JobRequest, LavieClient, LavieError } from "../../client/sdk/index.ts";
import { decodeVideo } from "../../media/index.ts";

const exec = promisify(execFile);
const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const dir = mkdtempSync(join(tmpdir(), "lavie-cluster-test-"));
const logs: string[] = [];

let cluster: Cluster;
let client: LavieClient;
let firstJobId: string | undefined;

const tinyJob = (prompt: string): JobRequest => ({
  prompt,
  seed: 3,
  base: { steps: 2 },
  interpolation: { steps: 1 },
  vsr: { steps: 1 },
});

/** The last lines of every process, for assertion messages. */
const tail = () => `\n--- cluster output (last 40 lines) ---\n${logs.slice(-40).join("\n")}`;

async function rejectsWith(p: Promise<unknown>, code: string, field?: string): Promise<LavieError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof LavieError, `expected a LavieError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (field !== undefined) assert.equal(err.field, field, err.message);
    return err;
  }
  assert.fail(`expected a ${code} error`);
}

before(async () => {
  cluster = await startCluster({
    preset: "tiny",
    runners: "all=1",
    log: (name, line) => {
      if (name === "nats-server" && !/\[(WRN|ERR|FTL)\]/.test(line)) return;
      logs.push(`[${name}] ${line}`);
      if (process.env.LAVIE_TEST_VERBOSE) process.stderr.write(`[${name}] ${line}\n`);
    },
  });
  client = new LavieClient(cluster.address);
});

after(async () => {
  client?.close();
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("a job submitted through LavieClient runs on the cluster; its MP4 has 61 frames at 192x128", {
  timeout: 300_000,
}, async () => {
  const key = `e2e-${process.pid}-${Date.now()}`;
  const { job, created } = await client.submit(tinyJob("a panda playing guitar"), { idempotencyKey: key });
  assert.equal(created, true);
  assert.match(job.id, /^[A-Za-z0-9_-]+$/);
  assert.ok(["queued", "running"].includes(job.state), job.state);
  assert.equal(job.request.prompt, "a panda playing guitar");
  firstJobId = job.id;

  const events: JobEvent[] = [];
  for await (const e of client.watch(job.id)) events.push(e);
  const types = new Set(events.map((e) => e.type));
  const last = events.at(-1);
  assert.equal(last?.type, "done", `job ended with ${JSON.stringify(last)}${tail()}`);
  for (const t of ["stage_started", "task_progress", "stage_finished"])
    assert.ok(types.has(t as JobEvent["type"]), `no ${t} event; got ${[...types].join(", ")}`);
  const progress = events.filter((e) => e.type === "task_progress");
  assert.ok(progress.every((e) => e.jobId === job.id && e.step >= 1 && e.step <= e.total));
  const stagesDone = events.filter((e) => e.type === "stage_finished").map((e) => e.stage);
  assert.deepEqual([...new Set(stagesDone)].sort(), ["base", "interpolation", "vsr"]);

  const got = await client.get(job.id);
  assert.equal(got.state, "succeeded");
  assert.ok(got.result);
  assert.deepEqual([got.result.frames, got.result.width, got.result.height], [61, 192, 128]);

  // Same key again: the same job, not a new one.
  const again = await client.submit(tinyJob("a panda playing guitar"), { idempotencyKey: key });
  assert.equal(again.job.id, job.id);
  assert.equal(again.created, false);

  const out = join(dir, "sdk.mp4");
  const r = await client.fetchResultToFile(job.id, out);
  assert.equal(r.bytes, got.result.bytes);
  const video = await decodeVideo(out);
  assert.equal(video.frames.length, 61);
  assert.equal(video.width, 192);
  assert.equal(video.height, 128);

  // fetchResult streams the same bytes.
  let streamed = 0;
  for await (const chunk of client.fetchResult(job.id)) streamed += chunk.byteLength;
  assert.equal(streamed, got.result.bytes);

  const listed = await client.list({ state: "succeeded" });
  assert.ok(listed.some((j) => j.id === job.id));
});

test("malformed requests get INVALID_ARGUMENT / NOT_FOUND and the coordinator keeps serving", {
  timeout: 120_000,
}, async () => {
  await rejectsWith(client.submit({ prompt: "" }), "invalid_argument", "prompt");
  await rejectsWith(client.submit({ prompt: "x", base: { steps: 0 } }), "invalid_argument", "base.steps");
  await rejectsWith(
    client.submit({ prompt: "x", vsr: { sampler: "nope" } }),
    "invalid_argument",
    "vsr.sampler",
  );
  await rejectsWith(client.submit({ prompt: "x".repeat(5000) }), "invalid_argument", "prompt");
  await rejectsWith(client.submit({ prompt: "x", height: 36 }), "invalid_argument", "height");
  await rejectsWith(client.submit({ prompt: "x", width: 100_000 }), "invalid_argument", "width");
  await rejectsWith(client.submit({ prompt: "x", vsr: { steps: 1001 } }), "invalid_argument", "vsr.steps");
  await rejectsWith(client.get("no-such-job"), "not_found");
  await rejectsWith(client.get("../../etc/passwd"), "invalid_argument"); // not a job id at all
  await rejectsWith(client.cancel("no-such-job"), "not_found");
  // Streams on an unknown job end with NOT_FOUND too (bounded: a stream that never answers fails here).
  const w = await rejectsWith(
    (async () => {
      for await (const _ of client.watch("no-such-job", { signal: AbortSignal.timeout(5000) })) {
        // no events expected
      }
    })(),
    "not_found",
  );
  assert.ok(!w.retryable);
  await rejectsWith(
    (async () => {
      for await (const _ of client.fetchResult("no-such-job", { signal: AbortSignal.timeout(5000) })) {
        // no chunks expected
      }
    })(),
    "not_found",
  );
  await rejectsWith(client.get(""), "invalid_argument");

  // Still serving.
  const jobs = await client.list();
  const id = firstJobId ?? jobs[0]?.id;
  if (id) assert.equal((await client.get(id)).id, id);
  if (firstJobId) await rejectsWith(client.fetchResultToFile("no-such-job", join(dir, "x.mp4")), "not_found");
});

test("lavie generate --server submits to the coordinator and writes the MP4", {
  timeout: 300_000,
}, async () => {
  const out = join(dir, "cli.mp4");
  const r = await exec(
    process.execPath,
    [
      join(repo, "bin", "lavie.js"),
      "generate",
      "x",
      "--server",
      cluster.address,
      "--preset",
      "tiny",
      "--steps",
      "1",
      "--out",
      out,
    ],
    { cwd: repo, timeout: 280_000 },
  ).catch((e: { code: number; stdout: string; stderr: string }) =>
    assert.fail(`exit ${e.code}:\n${e.stderr}${tail()}`),
  );
  assert.match(r.stderr, /wrote .*cli\.mp4: 61 frames 192x128 @ 24 fps/);
  const id = /job (\S+) submitted/.exec(r.stderr)?.[1];
  assert.ok(id, r.stderr);
  const video = await decodeVideo(out);
  assert.equal(video.frames.length, 61);
  assert.deepEqual([video.width, video.height], [192, 128]);

  const list = await exec(
    process.execPath,
    [join(repo, "bin", "lavie.js"), "jobs", "list", "--server", cluster.address, "--json"],
    {
      cwd: repo,
      timeout: 120_000,
    },
  );
  const jobs = JSON.parse(list.stdout) as { id: string; state: string }[];
  assert.equal(jobs.find((j) => j.id === id)?.state, "succeeded");

  const missing = await exec(
    process.execPath,
    [join(repo, "bin", "lavie.js"), "jobs", "get", "no-such-job", "--server", cluster.address],
    {
      cwd: repo,
      timeout: 120_000,
    },
  ).then(
    () => assert.fail("expected a failure"),
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /error: .*no-such-job/);
});
