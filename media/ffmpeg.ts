/** Locating and running ffmpeg/ffprobe. */
import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { delimiter, join } from "node:path";

/** Absolute path of an executable on PATH, or undefined. */
export async function findExecutable(name: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Keeps the last `limit` characters of a stream (ffmpeg's stderr) for error messages. */
export class TailBuffer {
  private text = "";
  constructor(private readonly limit = 8192) {}
  push(chunk: Buffer | string): void {
    this.text += chunk.toString();
    if (this.text.length > 2 * this.limit) this.text = this.text.slice(-this.limit);
  }
  toString(): string {
    return this.text.slice(-this.limit).trim();
  }
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion with no stdin, collecting (bounded) stdout and stderr. */
export function run(cmd: string, args: readonly string[]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let outBytes = 0;
    const err = new TailBuffer();
    child.stdout.on("data", (c: Buffer) => {
      if (outBytes < 1 << 20) out.push(c);
      outBytes += c.length;
    });
    child.stderr.on("data", (c: Buffer) => err.push(c));
    child.on("error", reject);
    child.on("close", (code, signal) =>
      resolve({ code, signal, stdout: Buffer.concat(out).toString(), stderr: err.toString() }),
    );
  });
}
