/**
 * Job state and idempotency keys in a JetStream KV bucket (file storage, history 1), shared by all
 * coordinator replicas. Writes are optimistic: pass the revision you read and a concurrent writer
 * makes the write fail with a retryable "failed_precondition" instead of being overwritten.
 *
 * Keys: "jobs.<jobId>" for job records, "idem.<sha256(key)>" for idempotency keys (hashed, so any
 * client-chosen string is a valid KV key).
 */
import { createHash } from "node:crypto";
import { StorageType } from "@nats-io/jetstream";
import type { KV, Kvm } from "@nats-io/kv";
import { invalidArgument, LavieError } from "../../core/errors.ts";
import { isWrongLastSequence } from "./connect.ts";

export const DEFAULT_JOBS_BUCKET = "lavie-jobs";

export interface JobRecord<T> {
  readonly id: string;
  readonly value: T;
  /** Pass back to put()/delete() to write only if nobody else has written since. */
  readonly revision: number;
  readonly updatedAt: Date;
}

export interface PutOptions {
  /** 0: create only (fails if the job exists); n: only if the current revision is n. */
  revision?: number;
}

const JOB_ID = /^[A-Za-z0-9_-]{1,128}$/;

function jobKey(id: string): string {
  if (!JOB_ID.test(id)) throw invalidArgument("job_id", `"${id}" must match ${JOB_ID.source}`);
  return `jobs.${id}`;
}

function idemKey(key: string): string {
  if (key.length === 0 || key.length > 1024)
    throw invalidArgument("idempotency_key", "must be 1-1024 characters");
  return `idem.${createHash("sha256").update(key).digest("hex")}`;
}

function conflict(id: string, revision: number, err: unknown): LavieError {
  const what = revision === 0 ? "already exists" : `was modified since revision ${revision}`;
  return new LavieError("failed_precondition", `job ${id} ${what}; read it again and retry`, {
    retryable: true,
    cause: err,
  });
}

function unavailable(what: string, err: unknown): LavieError {
  if (err instanceof LavieError) return err;
  return new LavieError("unavailable", `${what}: ${err instanceof Error ? err.message : String(err)}`, {
    cause: err,
  });
}

const enc = new TextEncoder();

export class NatsJobStore {
  private constructor(private readonly kv: KV) {}

  static async open(
    kvm: Kvm,
    opts: { bucket?: string; storage?: "file" | "memory" } = {},
  ): Promise<NatsJobStore> {
    const bucket = opts.bucket ?? DEFAULT_JOBS_BUCKET;
    try {
      const kv = await kvm.create(bucket, {
        history: 1,
        storage: opts.storage === "memory" ? StorageType.Memory : StorageType.File,
      });
      return new NatsJobStore(kv);
    } catch (err) {
      throw unavailable(`open KV bucket ${bucket}`, err);
    }
  }

  async get<T>(id: string): Promise<JobRecord<T> | null> {
    const key = jobKey(id);
    let e: Awaited<ReturnType<KV["get"]>>;
    try {
      e = await this.kv.get(key);
    } catch (err) {
      throw unavailable(`get job ${id}`, err);
    }
    if (e?.operation !== "PUT") return null;
    return { id, value: e.json<T>(), revision: e.revision, updatedAt: e.created };
  }

  /** Writes a job record; returns the new revision. */
  async put<T>(id: string, value: T, opts: PutOptions = {}): Promise<number> {
    const key = jobKey(id);
    const data = enc.encode(JSON.stringify(value));
    try {
      if (opts.revision === undefined) return await this.kv.put(key, data);
      if (opts.revision === 0) return await this.kv.create(key, data);
      return await this.kv.update(key, data, opts.revision);
    } catch (err) {
      if (opts.revision !== undefined && isWrongLastSequence(err)) throw conflict(id, opts.revision, err);
      throw unavailable(`put job ${id}`, err);
    }
  }

  /**
   * Read-modify-write with retries on conflict: `fn` gets the current value (null if none) and
   * returns the new one. Returns the written record.
   */
  async update<T>(id: string, fn: (cur: T | null) => T, maxAttempts = 10): Promise<JobRecord<T>> {
    for (let attempt = 1; ; attempt++) {
      const cur = await this.get<T>(id);
      const value = fn(cur?.value ?? null);
      try {
        const revision = await this.put(id, value, { revision: cur?.revision ?? 0 });
        return { id, value, revision, updatedAt: new Date() };
      } catch (err) {
        if (!(err instanceof LavieError && err.code === "failed_precondition") || attempt >= maxAttempts)
          throw err;
      }
    }
  }

  /** All job records (ids in key order). */
  async list<T>(): Promise<JobRecord<T>[]> {
    const ids: string[] = [];
    try {
      for await (const k of await this.kv.keys("jobs.>")) ids.push(k.slice("jobs.".length));
    } catch (err) {
      throw unavailable("list jobs", err);
    }
    ids.sort();
    const out: JobRecord<T>[] = [];
    for (const id of ids) {
      const r = await this.get<T>(id);
      if (r) out.push(r);
    }
    return out;
  }

  /** Deletes a job record (only at `revision` when given). */
  async delete(id: string, opts: PutOptions = {}): Promise<void> {
    const key = jobKey(id);
    try {
      await this.kv.delete(key, opts.revision ? { previousSeq: opts.revision } : undefined);
    } catch (err) {
      if (opts.revision && isWrongLastSequence(err)) throw conflict(id, opts.revision, err);
      throw unavailable(`delete job ${id}`, err);
    }
  }

  /**
   * Atomically binds an idempotency key to `jobId`. Returns null if this call won (the key was
   * free), or the job id the key is already bound to. Of concurrent claims exactly one wins.
   */
  async claimIdempotencyKey(key: string, jobId: string): Promise<string | null> {
    jobKey(jobId);
    const k = idemKey(key);
    for (let attempt = 0; attempt < 10; attempt++) {
      try {
        await this.kv.create(k, enc.encode(jobId));
        return null;
      } catch (err) {
        if (!isWrongLastSequence(err)) throw unavailable(`claim idempotency key`, err);
      }
      const e = await this.kv.get(k).catch((err: unknown) => {
        throw unavailable("read idempotency key", err);
      });
      // Released between our create and get: try again.
      if (e && e.operation === "PUT") return e.string();
    }
    throw new LavieError("unavailable", "idempotency key is contended; retry", { retryable: true });
  }

  /** Frees an idempotency key (e.g. when the job it names is deleted). */
  async releaseIdempotencyKey(key: string): Promise<void> {
    try {
      await this.kv.delete(idemKey(key));
    } catch (err) {
      throw unavailable("release idempotency key", err);
    }
  }
}
