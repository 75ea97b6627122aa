/**
 * Runs a commander program and maps failures to exit codes without stack traces:
 *   0 success (also --help, --version)
 *   2 usage errors: unknown command/option, bad option value, LavieError invalid_argument
 *   1 anything else (e.g. failed_precondition from `models verify`)
 *   130 interrupted (LavieError cancelled, e.g. Ctrl-C during `generate --server`)
 * Set LAVIE_DEBUG=1 to print stacks.
 */
import { type Command, CommanderError } from "commander";
import { LavieError } from "../../core/errors.ts";

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
export const EXIT_INTERRUPTED = 130;

const OK_CODES = new Set([
  "commander.helpDisplayed",
  "commander.help",
  "commander.version",
  "commander.executeSubCommandAsync",
]);

export async function runProgram(program: Command, argv: readonly string[]): Promise<number> {
  try {
    await program.parseAsync([...argv]);
    return EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander has already written its message to stderr.
      return OK_CODES.has(err.code) || err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    const e = LavieError.from(err);
    process.stderr.write(`error: ${e.message}\n`);
    if (process.env.LAVIE_DEBUG && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    if (e.code === "cancelled") return EXIT_INTERRUPTED;
    return e.code === "invalid_argument" ? EXIT_USAGE : EXIT_FAILURE;
  }
}
