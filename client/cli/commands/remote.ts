/**
 * Commands against a running coordinator (`--server host:port`, default $LAVIE_SERVER or
 * 127.0.0.1:50051):
 *
 *   lavie generate "<prompt>" --server host:port --out x.mp4   (submit, follow, fetch; see generate.ts)
 *   lavie jobs list [--state running] [--limit 20] [--json]
 *   lavie jobs get <id> [--json]
 *   lavie jobs watch <id>
 *   lavie jobs cancel <id>
 *   lavie jobs fetch <id> --out f.mp4
 *
 * Each takes the connection options of ../connection.ts: --api-key-file (or env LAVIE_API_KEY),
 * --tls, --tls-ca, --tls-cert, --tls-key, --tls-server-name.
 *
 * Ctrl-C during `generate --server` cancels the job on the coordinator before exiting (exit 130).
 */
import { randomUUID } from "node:crypto";
import { type Command, InvalidArgumentError, Option } from "commander";
import { LavieError } from "../../../core/errors.ts";
import type { JobRequest } from "../../../core/job.ts";
import { PRIORITIES, type Priority } from "../../../core/tenancy.ts";
import { decodeVideo, writePngFrames } from "../../../media/index.ts";
import { type Job, type JobStateName, LavieClient, type LavieClientOptions } from "../../sdk/client.ts";
import { addConnectionOptions, type ConnectionFlags, clientOptionsOf } from "../connection.ts";
import { formatBytes, table } from "../format.ts";
import { RemoteStageProgress } from "../progress.ts";

const say = (s: string) => process.stderr.write(`${s}\n`);
const out = (s = "") => process.stdout.write(`${s}\n`);

export const DEFAULT_SERVER = "127.0.0.1:50051";

export function parseServer(v: string): string {
  if (!/^(\[[0-9a-fA-F:.]+\]|[^\s:/[\]]+):\d{1,5}$/.test(v)) {
    throw new InvalidArgumentError(`must be host:port (e.g. 127.0.0.1:50051); got "${v}"`);
  }
  return v;
}

export function serverOption(required: boolean): Option {
  const o = new Option(
    "--server <host:port>",
    required ? "coordinator address" : "submit to this coordinator instead of running in-process",
  ).argParser(parseServer);
  return required ? o.env("LAVIE_SERVER").default(DEFAULT_SERVER) : o;
}

export function parseIdempotencyKey(v: string): string {
  if (v.length === 0 || v.length > 128) throw new InvalidArgumentError("must be 1-128 characters");
  return v;
}

export function parsePriority(v: string): Priority {
  const p = PRIORITIES.find((x) => x === v);
  if (!p) throw new InvalidArgumentError(`unknown priority "${v}"; allowed: ${PRIORITIES.join(", ")}`);
  return p;
}

/** Seconds: a number in 0..max. */
export function secondsParser(max: number): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n) || n < 0 || n > max)
      throw new InvalidArgumentError(`must be a number of seconds in 0..${max}; got "${v}"`);
    return n;
  };
}

/** --priority, --deadline and --wait-admission for commands that submit to a coordinator. */
export function schedulingOptions(): Option[] {
  return [
    new Option(
      "--priority <p>",
      "with --server: low, normal or high (queued jobs start by priority)",
    ).argParser(parsePriority),
    new Option(
      "--deadline <seconds>",
      "with --server: the job fails if not finished this long after submit (queueing included)",
    ).argParser(secondsParser(604_800)),
    new Option(
      "--wait-admission <seconds>",
      "with --server: while the coordinator's queues are full, resubmit as it hints for up to this long (default: fail at once)",
    ).argParser(secondsParser(86_400)),
  ];
}

/** Runs `fn` with SIGINT/SIGTERM turned into an abort; a second signal exits at once (130). */
async function withInterrupt<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  let count = 0;
  const onSignal = () => {
    if (++count > 1) process.exit(130);
    ac.abort(new Error("interrupted"));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    return await fn(ac.signal);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

function stepsOf(j: Job): string {
  const done = j.progress.reduce((n, p) => n + p.stepsDone, 0);
  const total = j.progress.reduce((n, p) => n + p.stepsTotal, 0);
  return total ? `${done}/${total}` : "";
}

/**
 * Follows a job's events with per-stage progress until it ends; resolves when it succeeded, throws a
 * LavieError when it failed or was cancelled.
 */
async function follow(client: LavieClient, job: Job, signal?: AbortSignal): Promise<Job> {
  const progress = new RemoteStageProgress();
  if (job.progress.length) progress.setTotals(job.progress);
  const asked = new Set<string>();
  for await (const e of client.watch(job.id, signal ? { signal } : {})) {
    if (e.type === "queued") say(`job ${job.id}: queued, position ${e.position} (1 = next to start)`);
    if ((e.type === "stage_started" || e.type === "task_progress") && !progress.hasTotals(e.stage)) {
      if (!asked.has(e.stage)) {
        asked.add(e.stage);
        const j = await client.get(job.id, signal ? { signal } : {}).catch(() => null);
        if (j) progress.setTotals(j.progress);
      }
    }
    progress.onEvent(e);
    if (e.type === "failed") throw new LavieError("internal", `job ${job.id} failed: ${e.reason}`);
    if (e.type === "cancelled") throw new LavieError("cancelled", `job ${job.id} was cancelled`);
  }
  return client.get(job.id);
}

export interface RemoteGenerateOptions {
  server: string;
  out: string;
  idempotencyKey?: string;
  priority?: Priority;
  deadlineSeconds?: number;
  /** Seconds to keep resubmitting while the coordinator's queues are full (default 0). */
  waitAdmissionSeconds?: number;
  framesDir?: string;
  /** Rewrites a validation error to name the CLI option. */
  explain?: (err: unknown) => unknown;
  /** Credentials and TLS (connection.ts). */
  connection?: LavieClientOptions;
}

/** `lavie generate --server`: submit, show progress, fetch the MP4; Ctrl-C cancels the job. */
export async function generateRemote(req: JobRequest, o: RemoteGenerateOptions): Promise<void> {
  const t0 = performance.now();
  const client = new LavieClient(o.server, o.connection);
  // One key for the whole command: the SDK's own submit retries then never create a second job.
  const idempotencyKey = o.idempotencyKey ?? `cli-${randomUUID()}`;
  try {
    await withInterrupt(async (signal) => {
      let jobId: string | undefined;
      try {
        const sub = await client
          .submit(req, {
            idempotencyKey,
            ...(o.priority && { priority: o.priority }),
            ...(o.deadlineSeconds !== undefined && { deadlineSeconds: o.deadlineSeconds }),
            admissionWaitMs: (o.waitAdmissionSeconds ?? 0) * 1000,
          })
          .catch((err: unknown) => {
            throw o.explain ? o.explain(err) : err;
          });
        jobId = sub.job.id;
        say(
          `job ${jobId} ${sub.created ? "submitted to" : "already exists on (same idempotency key)"} ${o.server}` +
            ` [idempotency key ${idempotencyKey}]`,
        );
        if (signal.aborted) throw new LavieError("cancelled", "interrupted");
        const job = await follow(client, sub.job, signal);
        const { result } = await client.fetchResultToFile(jobId, o.out, { signal });
        if (o.framesDir) {
          const v = await decodeVideo(o.out);
          await writePngFrames(o.framesDir, v);
        }
        say(
          `wrote ${o.out}: ${result.frames} frames ${result.width}x${result.height} @ ${result.fps} fps` +
            ` (${formatBytes(result.bytes)}) in ${((performance.now() - t0) / 1000).toFixed(1)}s` +
            ` [job ${job.id}, seed ${job.request.seed ?? req.seed ?? 0}]`,
        );
      } catch (err) {
        if (signal.aborted && jobId) {
          const j = await client.cancel(jobId).catch((e: unknown) => {
            say(`warning: could not cancel job ${jobId}: ${LavieError.from(e).message}`);
            return null;
          });
          throw new LavieError(
            "cancelled",
            j ? `interrupted; job ${jobId} is ${j.state}` : `interrupted; job ${jobId} may still run`,
          );
        }
        if (signal.aborted) throw new LavieError("cancelled", "interrupted");
        throw reach(o.server, err);
      }
    });
  } finally {
    client.close();
  }
}

const STATES: readonly Exclude<JobStateName, "unspecified">[] = [
  "queued",
  "running",
  "succeeded",
  "failed",
  "cancelled",
];

function parseState(v: string): Exclude<JobStateName, "unspecified"> {
  const s = STATES.find((x) => x === v);
  if (!s) throw new InvalidArgumentError(`unknown state "${v}"; allowed: ${STATES.join(", ")}`);
  return s;
}

function parseLimit(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1)
    throw new InvalidArgumentError(`must be a positive integer; got "${v}"`);
  return Number(v);
}

function jobJson(j: Job): string {
  return JSON.stringify(j, null, 2);
}

function describeJob(j: Job): string {
  const lines = [
    `id:        ${j.id}`,
    `state:     ${j.state}${j.state === "queued" ? ` (position ${j.queuePosition})` : ""}`,
    `tenant:    ${j.tenant}`,
    `priority:  ${j.priority}${j.deadlineMs ? `, deadline ${new Date(j.deadlineMs).toISOString()}` : ""}`,
    `prompt:    ${JSON.stringify(j.request.prompt)}`,
    `seed:      ${j.request.seed ?? 0}`,
    `created:   ${new Date(j.createdMs).toISOString()}`,
    `updated:   ${new Date(j.updatedMs).toISOString()}`,
  ];
  for (const p of j.progress) {
    lines.push(
      `${`${p.stage}:`.padEnd(10)} ${p.stepsDone}/${p.stepsTotal} steps, ${p.tasksDone}/${p.tasksTotal} tasks`,
    );
  }
  if (j.result) {
    const r = j.result;
    lines.push(
      `result:    ${r.frames} frames ${r.width}x${r.height} @ ${r.fps} fps, ${formatBytes(r.bytes)} ${r.contentType} ${r.digest}`,
    );
  }
  if (j.error) lines.push(`error:     ${j.error}`);
  return lines.join("\n");
}

/** Names the coordinator in transport errors ("cannot reach ..."), which otherwise say only ECONNREFUSED. */
function reach(server: string, err: unknown): LavieError {
  const e = LavieError.from(err);
  if (e.code !== "unavailable") return e;
  return new LavieError("unavailable", `coordinator ${server}: ${e.message}`, { cause: e });
}

async function withClient<T>(
  o: { server: string } & ConnectionFlags,
  fn: (c: LavieClient) => Promise<T>,
): Promise<T> {
  const c = new LavieClient(o.server, clientOptionsOf(o.server, o));
  try {
    return await fn(c);
  } catch (err) {
    throw reach(o.server, err);
  } finally {
    c.close();
  }
}

export function registerJobsCommands(program: Command): void {
  const jobs = program
    .command("jobs")
    .description("list, inspect, follow, cancel and fetch jobs on a coordinator");

  jobs
    .command("list")
    .description("jobs on the coordinator, oldest first")
    .addOption(serverOption(true))
    .addOption(
      new Option("--state <state>", `only jobs in this state: ${STATES.join(", ")}`).argParser(parseState),
    )
    .addOption(new Option("--limit <n>", "only the newest n jobs").argParser(parseLimit))
    .option("--all-tenants", "every tenant's jobs (admin credentials only)")
    .option("--json", "print the jobs as JSON")
    .action(
      async (o: {
        server: string;
        state?: JobStateName;
        limit?: number;
        allTenants?: boolean;
        json?: boolean;
      }) => {
        const list = await withClient(o, (c) =>
          c.list({
            ...(o.state && o.state !== "unspecified" && { state: o.state }),
            ...(o.limit !== undefined && { limit: o.limit }),
            ...(o.allTenants && { allTenants: true }),
          }),
        );
        if (o.json) out(JSON.stringify(list, null, 2));
        else if (list.length === 0) out("no jobs");
        else
          out(
            table(
              ["ID", "STATE", "CREATED", "STEPS", "RESULT", "PROMPT"],
              list.map((j) => [
                j.id,
                j.state,
                new Date(j.createdMs).toISOString().replace("T", " ").slice(0, 19),
                stepsOf(j),
                j.result ? `${j.result.frames}f ${j.result.width}x${j.result.height}` : j.error.slice(0, 40),
                JSON.stringify(
                  j.request.prompt.length > 40 ? `${j.request.prompt.slice(0, 40)}...` : j.request.prompt,
                ),
              ]),
            ),
          );
      },
    );

  jobs
    .command("get")
    .description("one job: state, progress per stage, result or error")
    .argument("<id>", "job id")
    .addOption(serverOption(true))
    .option("--json", "print the job as JSON")
    .action(async (id: string, o: { server: string; json?: boolean }) => {
      const j = await withClient(o, (c) => c.get(id));
      out(o.json ? jobJson(j) : describeJob(j));
    });

  jobs
    .command("watch")
    .description("follow a job's progress until it ends (Ctrl-C stops watching; the job keeps running)")
    .argument("<id>", "job id")
    .addOption(serverOption(true))
    .action(async (id: string, o: { server: string }) => {
      await withClient(o, async (c) => {
        const j = await follow(c, await c.get(id));
        out(describeJob(j));
      });
    });

  jobs
    .command("cancel")
    .description("cancel a job: its tasks stop on the runners and its intermediates are deleted")
    .argument("<id>", "job id")
    .addOption(serverOption(true))
    .action(async (id: string, o: { server: string }) => {
      const j = await withClient(o, (c) => c.cancel(id));
      out(`job ${j.id}: ${j.state}`);
    });

  jobs
    .command("fetch")
    .description("download a succeeded job's MP4")
    .argument("<id>", "job id")
    .addOption(serverOption(true))
    .addOption(new Option("--out <file>", "output MP4 file").makeOptionMandatory())
    .action(async (id: string, o: { server: string; out: string }) => {
      const r = await withClient(o, (c) => c.fetchResultToFile(id, o.out));
      say(
        `wrote ${r.path}: ${r.result.frames} frames ${r.result.width}x${r.result.height} @ ${r.result.fps} fps (${formatBytes(r.bytes)})`,
      );
    });
  // --api-key-file, --tls-ca, ... on every jobs command (connection.ts).
  for (const c of jobs.commands) addConnectionOptions(c);
}
