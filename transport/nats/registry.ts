/**
 * Stage-runner registration: each runner keeps a KV entry "runners.<id>" alive by re-putting it
 * every ~1 s; the bucket's max_age (TTL, default 5 s) removes entries of runners that vanished.
 * Readers also treat entries older than the TTL as gone, since the server only expires them
 * lazily and does not notify watchers when it does. Ages use the server's entry timestamp (capped
 * at the local clock), so coordinator and runner machines need roughly synchronised clocks.
 */

import { StorageType } from "@nats-io/jetstream";
import type { KV, Kvm, KvWatchEntry } from "@nats-io/kv";
import { invalidArgument, LavieError } from "../../core/errors.ts";

export const DEFAULT_RUNNERS_BUCKET = "lavie-runners";

export interface RunnerInfo {
  readonly id: string;
  /** gRPC address, host:port. */
  readonly address: string;
  readonly stages: string[];
  readonly models: string[];
  readonly slots: number;
  readonly freeSlots: number;
}

export interface LiveRunner extends RunnerInfo {
  /** Epoch ms of the last heartbeat seen. */
  readonly lastSeen: number;
}

export interface Registration {
  /** Publishes a heartbeat now (also done on the interval). */
  heartbeat(): Promise<void>;
  /** Stops heartbeating and removes the entry. */
  deregister(): Promise<void>;
}

export interface RegisterOptions {
  /** Heartbeat interval in ms (default 1000). */
  intervalMs?: number;
  /** Called before each heartbeat for the changing fields. */
  update?: () => Partial<Pick<RunnerInfo, "freeSlots" | "models">>;
  /** Heartbeat failures (e.g. while NATS restarts); heartbeating continues. */
  onError?: (err: unknown) => void;
}

const RUNNER_ID = /^[A-Za-z0-9_-]{1,128}$/;
const PREFIX = "runners.";
const enc = new TextEncoder();

function keyOf(id: string): string {
  if (!RUNNER_ID.test(id)) throw invalidArgument("runner.id", `"${id}" must match ${RUNNER_ID.source}`);
  return PREFIX + id;
}

function unavailable(what: string, err: unknown): LavieError {
  return new LavieError("unavailable", `${what}: ${err instanceof Error ? err.message : String(err)}`, {
    cause: err,
  });
}

function sameInfo(a: RunnerInfo, b: RunnerInfo): boolean {
  return (
    JSON.stringify([a.address, a.stages, a.models, a.slots, a.freeSlots]) ===
    JSON.stringify([b.address, b.stages, b.models, b.slots, b.freeSlots])
  );
}

export class RunnerRegistry {
  private constructor(
    private readonly kv: KV,
    readonly ttlMs: number,
  ) {}

  static async open(
    kvm: Kvm,
    opts: { bucket?: string; ttlMs?: number; storage?: "file" | "memory" } = {},
  ): Promise<RunnerRegistry> {
    const bucket = opts.bucket ?? DEFAULT_RUNNERS_BUCKET;
    const ttlMs = opts.ttlMs ?? 5_000;
    try {
      const kv = await kvm.create(bucket, {
        history: 1,
        ttl: ttlMs,
        storage: opts.storage === "memory" ? StorageType.Memory : StorageType.File,
      });
      return new RunnerRegistry(kv, ttlMs);
    } catch (err) {
      throw unavailable(`open KV bucket ${bucket}`, err);
    }
  }

  /** Registers a runner and heartbeats until deregister(). Resolves after the first heartbeat. */
  async register(info: RunnerInfo, opts: RegisterOptions = {}): Promise<Registration> {
    const key = keyOf(info.id);
    const intervalMs = opts.intervalMs ?? 1_000;
    let current: RunnerInfo = { ...info };
    let stopped = false;
    let timer: NodeJS.Timeout | null = null;
    let inFlight: Promise<void> = Promise.resolve();

    const beat = async (): Promise<void> => {
      if (stopped) return;
      if (opts.update) current = { ...current, ...opts.update() };
      await this.kv.put(key, enc.encode(JSON.stringify(current)));
    };
    const loop = () => {
      timer = setTimeout(() => {
        inFlight = beat().catch((err: unknown) => opts.onError?.(err));
        void inFlight.then(() => {
          if (!stopped) loop();
        });
      }, intervalMs);
      timer.unref();
    };

    try {
      await beat();
    } catch (err) {
      throw unavailable(`register runner ${info.id}`, err);
    }
    loop();
    return {
      heartbeat: async () => {
        await inFlight;
        inFlight = beat();
        await inFlight;
      },
      deregister: async () => {
        stopped = true;
        if (timer) clearTimeout(timer);
        await inFlight.catch(() => {});
        try {
          await this.kv.delete(key);
        } catch (err) {
          throw unavailable(`deregister runner ${info.id}`, err);
        }
      },
    };
  }

  private fresh(e: { created: Date }, now: number): number | null {
    const seen = Math.min(now, e.created.getTime());
    return now - seen <= this.ttlMs ? seen : null;
  }

  /** Live runners (heartbeat within the TTL), sorted by id. */
  async list(): Promise<LiveRunner[]> {
    const out: LiveRunner[] = [];
    try {
      const keys: string[] = [];
      for await (const k of await this.kv.keys(`${PREFIX}>`)) keys.push(k);
      for (const k of keys) {
        const e = await this.kv.get(k);
        if (e?.operation !== "PUT") continue;
        const seen = this.fresh(e, Date.now());
        if (seen !== null) out.push({ ...e.json<RunnerInfo>(), lastSeen: seen });
      }
    } catch (err) {
      throw unavailable("list runners", err);
    }
    return out.sort((a, b) => a.id.localeCompare(b.id));
  }

  /**
   * Calls onChange with the full set of live runners whenever a runner appears, changes
   * (address, stages, models, slots) or disappears (deregistered or silent for longer than the TTL).
   */
  async watchRunners(onChange: (runners: LiveRunner[]) => void): Promise<{ stop(): void }> {
    const live = new Map<string, LiveRunner>();
    const emit = () => onChange([...live.values()].sort((a, b) => a.id.localeCompare(b.id)));
    let iter: Awaited<ReturnType<KV["watch"]>>;
    try {
      iter = await this.kv.watch({ key: `${PREFIX}>` });
    } catch (err) {
      throw unavailable("watch runners", err);
    }
    const apply = (e: KvWatchEntry) => {
      const id = e.key.slice(PREFIX.length);
      if (e.operation !== "PUT") {
        if (live.delete(id)) emit();
        return;
      }
      const seen = this.fresh(e, Date.now());
      const prev = live.get(id);
      if (seen === null) {
        if (live.delete(id)) emit();
        return;
      }
      const next: LiveRunner = { ...e.json<RunnerInfo>(), id, lastSeen: seen };
      live.set(id, next);
      if (!prev || !sameInfo(prev, next)) emit();
    };
    void (async () => {
      for await (const e of iter) apply(e);
    })().catch(() => {});
    const sweep = setInterval(
      () => {
        const now = Date.now();
        let changed = false;
        for (const [id, r] of live) {
          if (now - r.lastSeen > this.ttlMs) {
            live.delete(id);
            changed = true;
          }
        }
        if (changed) emit();
      },
      Math.max(50, Math.min(1_000, this.ttlMs / 10)),
    );
    sweep.unref();
    return {
      stop: () => {
        clearInterval(sweep);
        iter.stop();
      },
    };
  }
}
