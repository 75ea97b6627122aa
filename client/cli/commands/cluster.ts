/**
 * `lavie cluster up`: a whole cluster on this machine in one command: nats-server (JetStream),
 * the coordinator and stage runners as child processes (client/cluster). Prints the coordinator's
 * address and how to submit; Ctrl-C / SIGTERM stop runners (they drain), then the coordinator,
 * then nats-server.
 *
 *   lavie cluster up --runners base=1,interpolation=1,vsr=2 --preset tiny --port 50051
 */
import { type Command, InvalidArgumentError, Option } from "commander";
import { LavieError } from "../../../core/errors.ts";
import { type ClusterProcess, parseRunnerSpec, startCluster } from "../../cluster/cluster.ts";
import { parseRunnablePreset } from "../options.ts";

const say = (s: string) => process.stderr.write(`${s}\n`);
const out = (s = "") => process.stdout.write(`${s}\n`);

function port(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 65535) throw new InvalidArgumentError(`must be a port 0..65535; got "${v}"`);
  return n;
}

function positive(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > 1024)
    throw new InvalidArgumentError(`must be an integer 1..1024; got "${v}"`);
  return n;
}

function runners(v: string): string {
  try {
    parseRunnerSpec(v);
  } catch (err) {
    throw new InvalidArgumentError(LavieError.from(err).message.replace(/^--runners: /, ""));
  }
  return v;
}

interface UpOptions {
  runners: string;
  preset: string;
  modelDir?: string;
  host: string;
  port: number;
  natsPort: number;
  dataDir?: string;
  slots: number;
  ortThreads?: number;
  quiet?: boolean;
}

function describe(p: ClusterProcess): string {
  const what = p.role === "runner" ? `${p.address}  stages=${p.stages.join(",")}` : p.address;
  return `  ${p.name.padEnd(24)} pid ${String(p.process.pid ?? "?").padEnd(8)} ${what}`;
}

export function registerClusterCommands(program: Command): void {
  const cluster = program
    .command("cluster")
    .description("run a local cluster: nats-server, the coordinator and stage runners");

  cluster
    .command("up")
    .description("start nats-server, the coordinator and runners; Ctrl-C stops them all")
    .addOption(
      new Option(
        "--runners <spec>",
        "runner processes per stage: base=1,interpolation=1,vsr=2; all=N serves every stage; base+interpolation=1 combines",
      )
        .argParser(runners)
        .default("all=1"),
    )
    .addOption(
      new Option("--preset <name>", "model preset: tiny or small (built once and cached)")
        .argParser(parseRunnablePreset)
        .default("tiny"),
    )
    .addOption(new Option("--model-dir <dir>", "serve this model directory instead of a preset"))
    .addOption(new Option("--host <addr>", "address every process listens on").default("127.0.0.1"))
    .addOption(new Option("--port <n>", "coordinator gRPC port (0 = any)").argParser(port).default(50051))
    .addOption(
      new Option("--nats-port <n>", "nats-server client port (0 = any)").argParser(port).default(4222),
    )
    .addOption(
      new Option(
        "--data-dir <dir>",
        "keep nats-server's JetStream store (jobs, results) here; default a temporary directory",
      ),
    )
    .addOption(new Option("--slots <n>", "tasks in flight per runner").argParser(positive).default(1))
    .addOption(
      new Option(
        "--ort-threads <n>",
        "onnxruntime threads per runner slot (default: cores shared by all)",
      ).argParser(positive),
    )
    .option("--quiet", "do not forward the processes' logs")
    .action(async (o: UpOptions) => {
      say(`starting nats-server, the coordinator and runners (${o.runners}) ...`);
      const c = await startCluster({
        runners: o.runners,
        preset: o.preset,
        ...(o.modelDir !== undefined && { modelDir: o.modelDir }),
        host: o.host,
        port: o.port,
        natsPort: o.natsPort,
        ...(o.dataDir !== undefined && { dataDir: o.dataDir }),
        runnerSlots: o.slots,
        ...(o.ortThreads !== undefined && { ortThreads: o.ortThreads }),
        ...(!o.quiet && {
          log: (name: string, line: string) => {
            // nats-server's banner and routine info lines are noise here; its warnings and errors are not.
            if (name === "nats-server" && !/\[(WRN|ERR|FTL)\]/.test(line)) return;
            process.stderr.write(`[${name}] ${line}\n`);
          },
        }),
      });
      out("cluster ready:");
      for (const p of c.processes) out(describe(p));
      out(`  data dir ${c.dataDir}${o.dataDir === undefined ? " (temporary)" : ""}; models ${c.modelDir}`);
      out("");
      out(`coordinator: ${c.address}`);
      out(`submit:      lavie generate "a panda playing guitar" --server ${c.address} --out panda.mp4`);
      out(`jobs:        lavie jobs list --server ${c.address}`);
      out("Ctrl-C stops the cluster.");

      await new Promise<void>((resolve, reject) => {
        let stopping = false;
        const stop = (why: string, err?: Error) => {
          if (stopping) return;
          stopping = true;
          process.off("SIGINT", onSignal);
          process.off("SIGTERM", onSignal);
          say(`${why}: stopping runners, then the coordinator, then nats-server ...`);
          // A second Ctrl-C while stopping kills at once (children die with this process).
          process.once("SIGINT", () => process.exit(130));
          c.stop().then(
            () => {
              say("cluster stopped");
              if (err) reject(err);
              else resolve();
            },
            (e: unknown) => reject(e),
          );
        };
        const onSignal = (sig: NodeJS.Signals) => stop(sig);
        process.on("SIGINT", onSignal);
        process.on("SIGTERM", onSignal);
        c.onUnexpectedExit((p, s) => {
          const how = `exited unexpectedly (code ${s.code}, signal ${s.signal})`;
          if (p.role === "runner") {
            say(`warning: ${p.name} ${how}; its tasks move to other runners`);
            return;
          }
          stop(`${p.name} ${how}`, new LavieError("unavailable", `${p.name} ${how}:\n${p.process.logs()}`));
        });
      });
    });
}
