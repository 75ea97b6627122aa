/**
 * The data plane: tensors and large blobs in a JetStream object store (file storage, so objects
 * survive a nats-server restart). Tasks exchange TensorRefs over gRPC; the bytes go through here.
 *
 * Integrity: the object store records the SHA-256 of every object and re-checks it on every read;
 * a TensorRef carries the same digest, so get() compares ref, stored metadata and content. The
 * object store's SHA-256 is switched to node's native crypto (its pure-JS default is ~3x slower),
 * which makes that single hash per direction cheap.
 */
import { type ObjectInfo, type ObjectStore, type Objm, StorageType, setSha256Backend } from "@nats-io/obj";
import { LavieError } from "../../core/errors.ts";
import { numel, type Tensor } from "../../core/tensor.ts";

// Process-wide: node's native SHA-256 for the object store.
setSha256Backend("native");

/** A stored blob: the object's name, its SHA-256 ("sha256:<hex>") and its size in bytes. */
export interface BlobRef {
  readonly object: string;
  readonly digest: string;
  readonly bytes: number;
}

export interface TensorRef extends BlobRef {
  readonly dtype: "float32";
  readonly shape: number[];
}

export interface TensorStoreOptions {
  bucket?: string;
  /** Object chunk size; capped by the server's max_payload (1 MiB by default). */
  chunkBytes?: number;
  /** File storage (default) survives restarts; memory is for throwaway stores. */
  storage?: "file" | "memory";
}

export const DEFAULT_TENSOR_BUCKET = "lavie-tensors";
export const DEFAULT_CHUNK_BYTES = 1024 * 1024;

/** Converts the object store's "SHA-256=<base64url>" to "sha256:<hex>". */
export function digestFromInfo(info: Pick<ObjectInfo, "digest">): string {
  const prefix = "SHA-256=";
  if (!info.digest.startsWith(prefix)) return info.digest;
  return `sha256:${Buffer.from(info.digest.slice(prefix.length), "base64").toString("hex")}`;
}

function unavailable(what: string, err: unknown): LavieError {
  if (err instanceof LavieError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  if (/corrupt object|digests do not match/i.test(msg)) {
    return new LavieError("data_loss", `${what}: ${msg}`, { retryable: true, cause: err });
  }
  return new LavieError("unavailable", `${what}: ${msg}`, { cause: err });
}

function integrity(message: string): LavieError {
  return new LavieError("data_loss", message, { retryable: true });
}

/** The most bytes get() allocates for one tensor (checked before allocating). */
export const MAX_TENSOR_BYTES = 2 ** 31;

/**
 * Object names: 1-1024 characters without control characters, whitespace or NATS wildcards
 * ("*", ">"), "/"-separated segments that are not empty, "." or "..".
 */
export function checkObjectName(name: string): string {
  const bad = (why: string) =>
    new LavieError("invalid_argument", `object: ${JSON.stringify(name.slice(0, 80))} ${why}`, {
      field: "object",
    });
  if (name.length === 0 || name.length > 1024) throw bad("must be 1-1024 characters");
  if (/[\s*>\p{Cc}]/u.test(name)) throw bad("must not contain whitespace, control characters, * or >");
  if (name.split("/").some((seg) => seg === "" || seg === "." || seg === "..")) {
    throw bad('must not have empty, "." or ".." segments');
  }
  return name;
}

function streamOf(src: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): ReadableStream<Uint8Array> {
  const it =
    Symbol.asyncIterator in src
      ? (src as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]()
      : (src as Iterable<Uint8Array>)[Symbol.iterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const r = await it.next();
      if (r.done) controller.close();
      else if (r.value.byteLength > 0) controller.enqueue(r.value);
    },
    async cancel() {
      await it.return?.();
    },
  });
}

export class NatsTensorStore {
  private constructor(
    readonly bucket: string,
    private readonly os: ObjectStore,
    private readonly chunkBytes: number,
  ) {}

  /** Opens (creating if needed) the object store bucket. */
  static async open(objm: Objm, opts: TensorStoreOptions = {}): Promise<NatsTensorStore> {
    const bucket = opts.bucket ?? DEFAULT_TENSOR_BUCKET;
    try {
      const os = await objm.create(bucket, {
        storage: opts.storage === "memory" ? StorageType.Memory : StorageType.File,
      });
      return new NatsTensorStore(bucket, os, opts.chunkBytes ?? DEFAULT_CHUNK_BYTES);
    } catch (err) {
      throw unavailable(`open object store ${bucket}`, err);
    }
  }

  /** Stores a tensor under `name` (replacing any previous object of that name). */
  async put(name: string, t: Tensor): Promise<TensorRef> {
    checkObjectName(name);
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const shape = [...t.shape];
    let info: ObjectInfo;
    try {
      info = await this.os.putBlob(
        {
          name,
          options: { max_chunk_size: this.chunkBytes },
          metadata: { dtype: "float32", shape: JSON.stringify(shape) },
        },
        bytes,
      );
    } catch (err) {
      throw unavailable(`put tensor ${name}`, err);
    }
    return { object: name, dtype: "float32", shape, digest: digestFromInfo(info), bytes: info.size };
  }

  /** Reads a tensor, verifying size, shape and digest against the ref. */
  async get(ref: TensorRef): Promise<Tensor> {
    if (ref.dtype !== "float32") throw integrity(`tensor ${ref.object}: unsupported dtype ${ref.dtype}`);
    if (!ref.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new LavieError("invalid_argument", `tensor ${ref.object}: bad shape [${ref.shape.join(",")}]`, {
        field: "shape",
      });
    }
    const expected = numel(ref.shape) * 4;
    if (expected > MAX_TENSOR_BYTES) {
      throw new LavieError(
        "invalid_argument",
        `tensor ${ref.object}: shape [${ref.shape.join(",")}] needs ${expected} bytes, at most ${MAX_TENSOR_BYTES} are allowed`,
        { field: "shape" },
      );
    }
    if (ref.bytes !== expected) {
      throw integrity(
        `tensor ${ref.object}: ref says ${ref.bytes} bytes but shape [${ref.shape.join(",")}] needs ${expected}`,
      );
    }
    const out = new Uint8Array(new ArrayBuffer(expected));
    let at = 0;
    for await (const chunk of this.getBytes(ref, (info) => checkShape(ref, info))) {
      out.set(chunk, at);
      at += chunk.byteLength;
    }
    return { shape: [...ref.shape], data: new Float32Array(out.buffer) };
  }

  /**
   * Stores a blob from a stream of chunks (e.g. the final MP4) without holding it all in memory.
   */
  async putBytes(
    name: string,
    src: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    metadata: Record<string, string> = {},
  ): Promise<BlobRef> {
    checkObjectName(name);
    try {
      const info = await this.os.put(
        { name, options: { max_chunk_size: this.chunkBytes }, metadata },
        streamOf(src),
      );
      return { object: name, digest: digestFromInfo(info), bytes: info.size };
    } catch (err) {
      throw unavailable(`put object ${name}`, err);
    }
  }

  /**
   * Streams a blob's chunks. Size and digest are checked against the ref before the first chunk;
   * the content is checked against the digest when the stream ends (an error is thrown then).
   */
  async *getBytes(ref: BlobRef, check?: (info: ObjectInfo) => void): AsyncGenerator<Uint8Array> {
    const name = checkObjectName(ref.object);
    let r: Awaited<ReturnType<ObjectStore["get"]>>;
    try {
      r = await this.os.get(name);
    } catch (err) {
      throw unavailable(`get object ${name}`, err);
    }
    if (!r) throw new LavieError("not_found", `object ${name} not found in bucket ${this.bucket}`);
    const actual = digestFromInfo(r.info);
    if (actual !== ref.digest) {
      await r.data.cancel().catch(() => {});
      throw integrity(`object ${name}: digest mismatch (expected ${ref.digest}, stored ${actual})`);
    }
    if (r.info.size !== ref.bytes) {
      await r.data.cancel().catch(() => {});
      throw integrity(`object ${name}: size mismatch (expected ${ref.bytes} bytes, stored ${r.info.size})`);
    }
    if (check) {
      try {
        check(r.info);
      } catch (err) {
        await r.data.cancel().catch(() => {});
        throw err;
      }
    }
    let received = 0;
    try {
      for await (const chunk of r.data) {
        received += chunk.byteLength;
        if (received > ref.bytes)
          throw integrity(`object ${name}: more than the expected ${ref.bytes} bytes`);
        yield chunk;
      }
      await r.error;
    } catch (err) {
      throw unavailable(`get object ${name}`, err);
    }
    if (received !== ref.bytes) {
      throw integrity(`object ${name}: received ${received} bytes, expected ${ref.bytes}`);
    }
  }

  /**
   * The stored object's size, digest and recorded shape, from its info (no download); null when
   * there is none (or it was deleted).
   */
  async stat(
    name: string,
  ): Promise<{ object: string; bytes: number; digest: string; shape?: number[] } | null> {
    let info: ObjectInfo | null;
    try {
      info = await this.os.info(name);
    } catch (err) {
      throw unavailable(`stat object ${name}`, err);
    }
    if (!info || info.deleted) return null;
    let shape: number[] | undefined;
    try {
      const s: unknown = info.metadata?.shape === undefined ? undefined : JSON.parse(info.metadata.shape);
      if (Array.isArray(s) && s.every((d) => Number.isSafeInteger(d))) shape = s as number[];
    } catch {
      // not a tensor (or foreign metadata): no shape
    }
    return { object: name, bytes: info.size, digest: digestFromInfo(info), ...(shape ? { shape } : {}) };
  }

  /** Deletes one object; true if it existed. */
  async delete(name: string): Promise<boolean> {
    try {
      const info = await this.os.info(name);
      if (!info || info.deleted) return false;
      await this.os.delete(name);
      return true;
    } catch (err) {
      throw unavailable(`delete object ${name}`, err);
    }
  }

  /** Names of live objects starting with `prefix`. */
  async list(prefix = ""): Promise<string[]> {
    try {
      const all = await this.os.list();
      return all.filter((i) => !i.deleted && i.name.startsWith(prefix)).map((i) => i.name);
    } catch (err) {
      throw unavailable(`list objects ${prefix}*`, err);
    }
  }

  /** Deletes every object whose name starts with `prefix` (e.g. "<jobId>/"); returns how many. */
  async deletePrefix(prefix: string): Promise<number> {
    if (prefix === "")
      throw new LavieError("invalid_argument", "deletePrefix: empty prefix", { field: "prefix" });
    const names = await this.list(prefix);
    let n = 0;
    for (const name of names) if (await this.delete(name)) n++;
    return n;
  }

  /** The object store's status (bytes stored, etc.); for diagnostics. */
  async status(): Promise<{ bytes: number; sealed: boolean }> {
    const s = await this.os.status();
    return { bytes: s.size, sealed: s.sealed };
  }
}

function checkShape(ref: TensorRef, info: ObjectInfo): void {
  const stored = info.metadata?.shape;
  if (stored !== undefined && stored !== JSON.stringify(ref.shape)) {
    throw integrity(
      `tensor ${ref.object}: shape mismatch (expected [${ref.shape.join(",")}], stored ${stored})`,
    );
  }
  const dtype = info.metadata?.dtype;
  if (dtype !== undefined && dtype !== ref.dtype) {
    throw integrity(`tensor ${ref.object}: dtype mismatch (expected ${ref.dtype}, stored ${dtype})`);
  }
}
