/**
 * A configuration file that is re-read when it changes (mtime, size or inode), so rotating a mounted
 * Kubernetes Secret (an atomic symlink swap) needs no restart. The first read happens in open() and
 * throws; a later read that fails or does not parse keeps the previous content and is logged (the
 * message names the file, never its content).
 *
 *   const keys = WatchedFile.open("LAVIE_API_KEYS_FILE", path, parseApiKeys);
 *   keys.current(); // the parsed content, re-checked at most every checkIntervalMs
 */
import { readFileSync, statSync } from "node:fs";
import { LavieError } from "../../core/errors.ts";

export interface WatchedFileOptions {
  /** How often current() looks at the file's metadata, in ms (default 1000; 0 = every call). */
  checkIntervalMs?: number;
  /** Where reload failures and successful reloads are reported (default: nowhere). */
  log?: (line: string) => void;
  /** Clock for the check interval (tests). */
  now?: () => number;
}

/**
 * Parses a file's bytes; throws an Error whose message names what is wrong (and where: the line),
 * never the secret content itself. `label` is "<VARIABLE> (<path>)".
 */
export type FileParser<T> = (content: Buffer, label: string) => T;

function stampOf(path: string): string {
  const s = statSync(path);
  return `${s.mtimeMs}:${s.size}:${s.ino}`;
}

/** An invalid_argument error naming the variable (its field) and the file. */
export function configError(variable: string, message: string, cause?: unknown): LavieError {
  return new LavieError("invalid_argument", `${variable}: ${message}`, {
    field: variable,
    ...(cause !== undefined && { cause }),
  });
}

export class WatchedFile<T> {
  private value: T;
  private stamp: string;
  private checkedAt: number;
  private readonly interval: number;
  private readonly now: () => number;

  private constructor(
    readonly variable: string,
    readonly path: string,
    private readonly parse: FileParser<T>,
    private readonly opts: WatchedFileOptions,
    first: { value: T; stamp: string },
  ) {
    this.value = first.value;
    this.stamp = first.stamp;
    this.interval = opts.checkIntervalMs ?? 1000;
    this.now = opts.now ?? Date.now;
    this.checkedAt = this.now();
  }

  /** Reads and parses the file now; throws an invalid_argument LavieError naming the variable and file. */
  static open<T>(
    variable: string,
    path: string,
    parse: FileParser<T>,
    opts: WatchedFileOptions = {},
  ): WatchedFile<T> {
    return new WatchedFile(variable, path, parse, opts, WatchedFile.read(variable, path, parse));
  }

  private static read<T>(variable: string, path: string, parse: FileParser<T>): { value: T; stamp: string } {
    let content: Buffer;
    let stamp: string;
    try {
      stamp = stampOf(path);
      content = readFileSync(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? "read error";
      throw configError(variable, `cannot read ${path} (${code})`, err);
    }
    const label = `${variable} (${path})`;
    try {
      return { value: parse(content, label), stamp };
    } catch (err) {
      if (err instanceof LavieError) throw err;
      const message = err instanceof Error ? err.message : String(err);
      // Parsers name the label (variable, file) and the line themselves.
      throw new LavieError("invalid_argument", message.startsWith(label) ? message : `${label}: ${message}`, {
        field: variable,
      });
    }
  }

  /** The current content: re-read first when the file changed since the last look. */
  current(): T {
    const t = this.now();
    if (t - this.checkedAt < this.interval) return this.value;
    this.checkedAt = t;
    let stamp: string;
    try {
      stamp = stampOf(this.path);
    } catch (err) {
      this.opts.log?.(
        `${this.variable}: cannot stat ${this.path} (${(err as NodeJS.ErrnoException).code}); keeping the previous content`,
      );
      return this.value;
    }
    if (stamp === this.stamp) return this.value;
    try {
      const next = WatchedFile.read(this.variable, this.path, this.parse);
      this.value = next.value;
      this.stamp = next.stamp;
      this.opts.log?.(`${this.variable}: reloaded ${this.path}`);
    } catch (err) {
      // Remember the stamp: a broken file is reported once, not on every call.
      this.stamp = stamp;
      this.opts.log?.(
        `${LavieError.from(err).message}; keeping the previous content until the file is fixed`,
      );
    }
    return this.value;
  }
}
