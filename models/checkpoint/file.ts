/**
 * Byte-range access to a checkpoint file. Readers parse headers from a few ranges and keep only the
 * path, size and modification time; tensor data is read later, each read opening the file again and
 * refusing a file that changed in between (its offsets would no longer mean anything).
 */
import { constants } from "node:buffer";
import { open, stat } from "node:fs/promises";
import { LavieError } from "../../core/errors.ts";

const MAX_LENGTH = constants.MAX_LENGTH;

export class RangeFile {
  private constructor(
    readonly path: string,
    readonly size: number,
    private readonly mtimeMs: number,
  ) {}

  static async open(path: string): Promise<RangeFile> {
    let st: Awaited<ReturnType<typeof stat>>;
    try {
      st = await stat(path);
    } catch (err) {
      throw new LavieError("not_found", `${path}: cannot read checkpoint file (${(err as Error).message})`, {
        field: path,
        cause: err,
      });
    }
    if (!st.isFile()) {
      throw new LavieError("invalid_argument", `${path}: not a regular file`, { field: path });
    }
    return new RangeFile(path, st.size, st.mtimeMs);
  }

  /** Exactly `length` bytes at `offset`; the range must lie inside the file. */
  async read(offset: number, length: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw this.corrupt(`invalid byte range ${offset}+${length}`);
    }
    if (offset + length > this.size) {
      throw this.corrupt(
        `byte range ${offset}..${offset + length} is past the end of the file (${this.size} bytes)`,
      );
    }
    if (length > MAX_LENGTH) {
      throw new LavieError(
        "failed_precondition",
        `${this.path}: a ${length}-byte read is larger than one JavaScript buffer can hold (${MAX_LENGTH} bytes)`,
        { field: this.path },
      );
    }
    const out = new Uint8Array(length);
    const fh = await open(this.path, "r");
    try {
      const st = await fh.stat();
      if (st.size !== this.size || st.mtimeMs !== this.mtimeMs) {
        throw this.corrupt("the file changed after it was opened; open it again");
      }
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(out, done, length - done, offset + done);
        if (bytesRead === 0) throw this.corrupt(`unexpected end of file at byte ${offset + done}`);
        done += bytesRead;
      }
    } finally {
      await fh.close();
    }
    return out;
  }

  corrupt(message: string): LavieError {
    return new LavieError("data_loss", `${this.path}: ${message}`, { field: this.path, retryable: false });
  }
}
