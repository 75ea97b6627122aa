/**
 * The `lavie` command line. Each command group lives in commands/<group>.ts and registers itself
 * on the root program here; bin/lavie.js loads this file through tsx and calls main().
 *
 *   lavie generate "a panda playing guitar" --out panda.mp4 [--preset small] [--seed 1]
 *   lavie generate "a panda playing guitar" --server 127.0.0.1:50051 --out panda.mp4
 *   lavie interpolate base.mp4 --prompt "..." --out smooth.mp4
 *   lavie upscale smooth.mp4 --prompt "..." --out big.mp4
 *   lavie models build --preset tiny --out out/tiny [--seed 0]
 *   lavie models params --preset lavie
 *   lavie models verify out/tiny
 *   lavie cluster up [--runners base=1,interpolation=1,vsr=2] [--preset tiny] [--port 50051]
 *   lavie jobs list|get <id>|watch <id>|cancel <id>|fetch <id> --out f.mp4 [--server host:port]
 */
import { Command } from "commander";
import { registerClusterCommands } from "./commands/cluster.ts";
import { registerGenerateCommands } from "./commands/generate.ts";
import { registerModelsCommands } from "./commands/models.ts";
import { registerJobsCommands } from "./commands/remote.ts";
import { registerWorldCommands } from "./commands/world.ts";
import { runProgram } from "./run.ts";

export function createProgram(): Command {
  const program = new Command("lavie")
    .description("LaVie cascaded text-to-video inference: models, generation, interpolation, upscaling")
    .version("0.1.0")
    // Set before adding commands: subcommands inherit it, so errors reach runProgram as exceptions.
    .exitOverride()
    .showHelpAfterError("(run with --help for usage)");
  registerGenerateCommands(program);
  registerModelsCommands(program);
  registerWorldCommands(program);
  registerJobsCommands(program);
  registerClusterCommands(program);
  return program;
}

/** Runs the CLI on process-style argv (argv[0] node, argv[1] script); resolves to the exit code. */
export function main(argv: readonly string[] = process.argv): Promise<number> {
  return runProgram(createProgram(), argv);
}
