/**
 * Chaos drill at a chosen size (test/support/chaos.ts runChaos; the test runs a small one):
 *
 *   node --import tsx bench/chaos.ts [--jobs 24] [--runners 3] [--seed 1] [--kill-min 500] [--kill-max 2000]
 *       [--steps 1] [--timeout 600000] [--faults "exit:0.02,corrupt:0.01"] [--out bench/results/chaos.json]
 *
 * A nats-server, an in-process coordinator and --runners stage-runner processes (tiny preset); all
 * jobs submitted at once; a runner SIGKILLed every kill-min..kill-max ms and replaced (one always
 * stays up); --faults adds runner-side faults (LAVIE_FAULTS, a seed per runner process). Prints (and writes) the report: jobs, faults per kind, jobs lost and why, tiles
 * compared with in-process runs and how many differ, tasks retried, mean runner restart time.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import { LocalEngine } from "../coordinator/engine.ts";
import { ensureModels } from "../models/cache.ts";
import { runChaos } from "../test/support/chaos.ts";
import { startNatsServer } from "../test/support/nats-server.ts";
import { connectNats } from "../transport/nats/connect.ts";
import { NatsTensorStore } from "../transport/nats/tensors.ts";

const { values } = parseArgs({
  options: {
    jobs: { type: "string", default: "24" },
    runners: { type: "string", default: "3" },
    seed: { type: "string", default: "1" },
    "kill-min": { type: "string", default: "500" },
    "kill-max": { type: "string", default: "2000" },
    steps: { type: "string", default: "1" },
    timeout: { type: "string", default: "600000" },
    faults: { type: "string", default: "" },
    out: { type: "string", default: "" },
  },
});
const int = (name: keyof typeof values): number => {
  const n = Number(values[name]);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new Error(`--${name}: must be an integer >= 0, got ${values[name]}`);
  return n;
};

const modelDir = await ensureModels("tiny");
const engine = await LocalEngine.open(modelDir, { intraOpThreads: 1 });
const nats = await startNatsServer();
const clients = await connectNats(nats.url, { name: "chaos-bench" });
try {
  const steps = int("steps");
  const report = await runChaos({
    natsUrl: nats.url,
    modelDir,
    engine,
    store: await NatsTensorStore.open(clients.objm),
    jobs: int("jobs"),
    runners: int("runners"),
    seed: int("seed"),
    killEveryMs: [int("kill-min"), int("kill-max")],
    request: (i) => ({
      prompt: `chaos ${i % 3}`,
      seed: 100 + (i % 3),
      base: { steps },
      interpolation: { steps },
      vsr: { steps },
    }),
    timeoutMs: int("timeout"),
    ...(values.faults
      ? { runnerEnv: (_slot: number, gen: number) => ({ LAVIE_FAULTS: `${values.faults},seed=${gen}` }) }
      : {}),
    log: (line) => process.stderr.write(`${line}\n`),
  });
  const text = JSON.stringify(report, null, 2);
  process.stdout.write(`${text}\n`);
  if (values.out) {
    mkdirSync(dirname(values.out), { recursive: true });
    writeFileSync(values.out, `${text}\n`);
  }
} finally {
  await clients.close();
  await nats.stop();
  await engine.close();
}
process.exit(0);
