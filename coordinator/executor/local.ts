/**
 * Runs a plan in this process: ready tasks (all deps done) start in plan order, up to `concurrency`
 * at a time; tiles live in an in-memory store; each task reads assembled boxes of earlier tensors.
 * Networks run through a NetworkRunner (ORT worker threads), so the event loop stays free.
 */
import { LavieError } from "../../core/errors.ts";
import type { JobSpec } from "../../core/job.ts";
import type { Tensor } from "../../core/tensor.ts";
import { assembleBox } from "../../core/tiling/index.ts";
import {
  type CfgExchange,
  executeTask,
  type Feed,
  type TaskContext,
} from "../../stage-runners/tasks/execute.ts";
import { readsOf } from "../plan/reads.ts";
import type { NetworkId, Plan, Task, TensorRead } from "../plan/types.ts";

/** Runs one network by id (the adapter maps ids to model files and sessions). */
export interface NetworkExecutor {
  run(network: NetworkId, feeds: Record<string, Feed>, signal?: AbortSignal): Promise<Record<string, Tensor>>;
  tokenize(network: NetworkId, text: string): BigInt64Array;
}

export type ExecutorEvent =
  | { type: "task_started"; task: Task }
  | { type: "task_progress"; task: Task; done: number; total: number }
  | { type: "task_finished"; task: Task; ms: number };

export interface LocalExecutorOptions {
  /** Tasks in flight at once (default 1; more only helps with several ORT workers). */
  concurrency?: number;
  onEvent?: (e: ExecutorEvent) => void;
  signal?: AbortSignal;
  /** Tiles of tensors supplied from outside the plan (e.g. "input.frames"). */
  inputs?: Record<string, Tensor>;
  /** Drop a tensor's tiles once no pending task reads them (default true; keeps memory bounded). */
  release?: boolean;
}

/**
 * The in-memory CFG exchange of one gang: each member's swap(step) posts its output and waits for
 * the peer's. Aborting the gang's signal (a member failed, or the job was cancelled) ends waits.
 */
export class MemoryCfgGang {
  private readonly slots = new Map<
    string,
    { promise: Promise<Float32Array>; resolve: (v: Float32Array) => void }
  >();

  private slot(step: number, branch: string) {
    const key = `${step}.${branch}`;
    let s = this.slots.get(key);
    if (!s) {
      let resolve!: (v: Float32Array) => void;
      const promise = new Promise<Float32Array>((r) => {
        resolve = r;
      });
      s = { promise, resolve };
      this.slots.set(key, s);
    }
    return s;
  }

  member(branch: "uncond" | "cond"): CfgExchange {
    const peer = branch === "uncond" ? "cond" : "uncond";
    return {
      swap: (step, mine, signal) => {
        this.slot(step, branch).resolve(mine.slice());
        const theirs = this.slot(step, peer).promise.then((v) => {
          this.slots.delete(`${step}.${peer}`); // read once: the peer's copy is dropped
          return v;
        });
        if (!signal) return theirs;
        return new Promise((resolve, reject) => {
          const onAbort = () => reject(new LavieError("cancelled", "CFG peer gone: task cancelled"));
          if (signal.aborted) return onAbort();
          signal.addEventListener("abort", onAbort, { once: true });
          void theirs.then((v) => {
            signal.removeEventListener("abort", onAbort);
            resolve(v);
          });
        });
      },
    };
  }
}

/** Tiles of every tensor: tile index -> data. */
export class TileStore {
  private readonly tiles = new Map<string, Map<number, Tensor>>();

  put(tensor: string, tile: number, data: Tensor): void {
    let m = this.tiles.get(tensor);
    if (!m) this.tiles.set(tensor, (m = new Map()));
    m.set(tile, data);
  }

  get(tensor: string, tile: number): Tensor {
    const t = this.tiles.get(tensor)?.get(tile);
    if (!t) throw new LavieError("internal", `tile ${tile} of ${tensor} is not available`);
    return t;
  }

  drop(tensor: string): void {
    this.tiles.delete(tensor);
  }

  read(plan: Plan, r: TensorRead): Tensor {
    const tp = plan.tensors[r.tensor];
    if (!tp) throw new LavieError("internal", `unknown tensor ${r.tensor}`);
    return assembleBox(tp.tiles, r.box, (i) => this.get(r.tensor, i));
  }
}

/** Executes the plan and returns the store holding every kept tensor (at least plan.result). */
export async function runPlanLocally(
  plan: Plan,
  spec: JobSpec,
  nets: NetworkExecutor,
  opts: LocalExecutorOptions = {},
): Promise<TileStore> {
  const store = new TileStore();
  for (const [name, t] of Object.entries(opts.inputs ?? {})) store.put(name, 0, t);
  const concurrency = Math.max(1, opts.concurrency ?? 1);
  const done = new Set<string>();
  const pending = [...plan.tasks];
  // Remaining readers per tensor, to release tiles early.
  const readers = new Map<string, number>();
  for (const t of plan.tasks)
    for (const r of readsOf(t)) readers.set(r.tensor, (readers.get(r.tensor) ?? 0) + 1);
  const inFlight = new Map<string, Promise<void>>();
  let failure: unknown = null;

  // CFG gangs (BaseDenoiseTask.cfg): members start together, share an exchange and an abort.
  const gangs = new Map<string, { exchange: MemoryCfgGang; abort: AbortController }>();
  const gangOf = (task: Task) => {
    if (task.kind !== "base_denoise" || !task.cfg) return null;
    let g = gangs.get(task.cfg.gang);
    if (!g) {
      g = { exchange: new MemoryCfgGang(), abort: new AbortController() };
      gangs.set(task.cfg.gang, g);
    }
    return { ...g, branch: task.cfg.branch };
  };

  const start = (task: Task) => {
    const t0 = performance.now();
    opts.onEvent?.({ type: "task_started", task });
    const gang = gangOf(task);
    const signal = gang
      ? opts.signal
        ? AbortSignal.any([opts.signal, gang.abort.signal])
        : gang.abort.signal
      : opts.signal;
    const ctx: TaskContext = {
      spec,
      plan,
      read: async (r) => store.read(plan, r),
      run: (n, feeds, signal) => nets.run(n, feeds, signal),
      tokenize: (n, text) => nets.tokenize(n, text),
      progress: (d) => opts.onEvent?.({ type: "task_progress", task, done: d, total: task.units }),
      ...(signal ? { signal } : {}),
      ...(gang ? { cfg: gang.exchange.member(gang.branch) } : {}),
    };
    const p = executeTask(task, ctx).then(
      (tile) => {
        store.put(task.output.tensor, task.output.tile, tile);
        done.add(task.id);
        inFlight.delete(task.id);
        if (opts.release !== false) {
          for (const r of readsOf(task)) {
            const left = (readers.get(r.tensor) ?? 1) - 1;
            readers.set(r.tensor, left);
            if (left === 0 && r.tensor !== plan.result) store.drop(r.tensor);
          }
        }
        opts.onEvent?.({ type: "task_finished", task, ms: performance.now() - t0 });
      },
      (err) => {
        inFlight.delete(task.id);
        failure ??= err;
        gang?.abort.abort(); // the peer would wait for this member forever
      },
    );
    inFlight.set(task.id, p);
  };

  while (pending.length > 0 || inFlight.size > 0) {
    if (failure) break;
    if (opts.signal?.aborted) {
      failure = new LavieError("cancelled", "job cancelled");
      break;
    }
    for (let i = 0; i < pending.length && inFlight.size < concurrency; ) {
      const task = pending[i]!;
      if (task.deps.every((d) => done.has(d))) {
        pending.splice(i, 1);
        start(task);
        // The other members of its CFG gang start now too (even past `concurrency`): each waits
        // for the others every step. Members read the same inputs, so they are ready as well.
        if (task.kind === "base_denoise" && task.cfg) {
          const gang = task.cfg.gang;
          for (let j = pending.length - 1; j >= 0; j--) {
            const m = pending[j]!;
            if (m.kind === "base_denoise" && m.cfg?.gang === gang && m.deps.every((d) => done.has(d))) {
              pending.splice(j, 1);
              start(m);
            }
          }
          i = 0; // indices shifted
        }
      } else i++;
    }
    if (inFlight.size === 0) {
      if (pending.length > 0) throw new LavieError("internal", `plan deadlock at task ${pending[0]!.id}`);
      break;
    }
    await Promise.race(inFlight.values());
  }
  await Promise.allSettled(inFlight.values());
  if (failure) throw LavieError.from(failure);
  return store;
}
