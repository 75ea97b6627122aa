/**
 * The coordinator process: `node --import tsx coordinator/main.ts`.
 *
 * Environment (validated once; errors name the variable):
 * | variable                  | default          | meaning                                             |
 * |---------------------------|------------------|-----------------------------------------------------|
 * | LAVIE_NATS_URL            | (required)       | NATS server with JetStream, e.g. nats://127.0.0.1:4222 |
 * | LAVIE_MODEL_DIR           | -                | model directory (its manifest sets limits and plans) |
 * | LAVIE_PRESET              | tiny             | preset built/cached when LAVIE_MODEL_DIR is unset   |
 * | LAVIE_GRPC_HOST           | 127.0.0.1        | address the client API listens on                   |
 * | LAVIE_GRPC_PORT           | 50051            | port (0 = any free port)                            |
 * | LAVIE_MAX_RUNNING_JOBS    | 4                | jobs running at once; the rest wait in the queue    |
 * | LAVIE_TASK_ATTEMPTS       | 4                | attempts per task before the job fails              |
 * | LAVIE_PROGRESS_TIMEOUT_MS | 120000           | a task silent this long is moved to another runner  |
 * | LAVIE_KEEP_TENSORS        | 0                | 1: keep succeeded jobs' intermediate tiles (debug)  |
 * Prints "coordinator listening on <host:port>" when ready; SIGTERM/SIGINT stop it (jobs resume on restart).
 */
import { ensureModels } from "../models/cache.ts";
import { Coordinator } from "./server.ts";

function env(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === "" ? undefined : v;
}

function intEnv(name: string, dflt: number, min: number, max: number): number {
  const v = env(name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max) {
    throw new Error(`${name}: must be an integer in ${min}..${max}, got "${v}"`);
  }
  return n;
}

async function main(): Promise<void> {
  const natsUrl = env("LAVIE_NATS_URL");
  if (!natsUrl) throw new Error("LAVIE_NATS_URL: required (e.g. nats://127.0.0.1:4222)");
  const port = intEnv("LAVIE_GRPC_PORT", 50051, 0, 65535);
  const maxRunningJobs = intEnv("LAVIE_MAX_RUNNING_JOBS", 4, 1, 10_000);
  const maxAttempts = intEnv("LAVIE_TASK_ATTEMPTS", 4, 1, 100);
  const progressTimeoutMs = intEnv("LAVIE_PROGRESS_TIMEOUT_MS", 120_000, 100, 86_400_000);
  const modelDir = env("LAVIE_MODEL_DIR") ?? (await ensureModels(env("LAVIE_PRESET") ?? "tiny"));
  const c = await Coordinator.start({
    natsUrl,
    modelDir,
    host: env("LAVIE_GRPC_HOST") ?? "127.0.0.1",
    port,
    maxRunningJobs,
    keepTensors: env("LAVIE_KEEP_TENSORS") === "1",
    dispatcher: { maxAttempts, progressTimeoutMs },
  });
  process.stdout.write(`coordinator listening on ${c.address} (resumed ${c.resumed} jobs)\n`);
  const stop = () => {
    c.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`coordinator: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
});
