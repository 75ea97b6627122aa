/**
 * Fault injection for tests and chaos drills (never set in production): a runner configured with
 * a FaultSpec (LAVIE_FAULTS, see parseFaults) misbehaves on some of its tasks, so the coordinator's
 * detection (progress deadline, output verification, retries, quarantine) can be exercised against
 * real processes.
 *
 *   hang      after starting a task: no progress, never completes until cancelled
 *   corrupt   stores output bytes that differ from what the returned ref claims (digest mismatch)
 *   shape     returns a ref whose shape is wrong (same element count, so only a plan check sees it)
 *   fail      fails the task with an internal error (retryable: a fault of this runner)
 *   exit      the process exits mid-task (after computing, before writing the output)
 *
 * Each task draws at most one fault: the kinds are tried in the order given, each with its
 * probability, from a seeded generator (the same seed and task order give the same faults).
 */
import { createHash, randomInt } from "node:crypto";
import { LavieError } from "../../core/errors.ts";
import { mulberry32 } from "../../core/prng.ts";
import type { Tensor } from "../../core/tensor.ts";
import type { NatsTensorStore, TensorRef } from "../../transport/nats/tensors.ts";

export const FAULT_KINDS = ["hang", "corrupt", "shape", "fail", "exit"] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface FaultSpec {
  /** Probability per task of each kind, in the order the kinds are tried. */
  readonly rates: ReadonlyArray<readonly [FaultKind, number]>;
  /** PRNG seed (default: random). */
  readonly seed?: number;
  /** The first `after` tasks of the runner run without faults (default 0). */
  readonly after?: number;
}

export const FAULTS_GRAMMAR =
  "comma-separated items: <kind>:<probability 0..1> with kind one of hang, corrupt, shape, fail, exit " +
  '(each at most once), plus optional seed=<integer> and after=<tasks>; e.g. "corrupt:0.5,hang:0.1,seed=7,after=2"';

/** Parses LAVIE_FAULTS strictly; errors name the variable and the grammar. Empty text: null. */
export function parseFaults(text: string, variable = "LAVIE_FAULTS"): FaultSpec | null {
  const bad = (why: string) =>
    new LavieError("invalid_argument", `${variable}: ${why}; expected ${FAULTS_GRAMMAR}`, {
      field: variable,
    });
  if (text.trim() === "") return null;
  const rates: [FaultKind, number][] = [];
  let seed: number | undefined;
  let after: number | undefined;
  for (const raw of text.split(",")) {
    const item = raw.trim();
    let m = /^(seed|after)=(\d{1,15})$/.exec(item);
    if (m) {
      const n = Number(m[2]);
      if (m[1] === "seed") {
        if (seed !== undefined) throw bad(`seed given twice`);
        seed = n;
      } else {
        if (after !== undefined) throw bad(`after given twice`);
        after = n;
      }
      continue;
    }
    m = /^([a-z]+):(\d+(?:\.\d+)?|\.\d+)$/.exec(item);
    if (!m) throw bad(`"${item}" is not an item`);
    const kind = m[1] as FaultKind;
    if (!FAULT_KINDS.includes(kind)) throw bad(`unknown fault kind "${m[1]}"`);
    if (rates.some(([k]) => k === kind)) throw bad(`fault kind "${kind}" given twice`);
    const p = Number(m[2]);
    if (!(p >= 0 && p <= 1)) throw bad(`probability of ${kind} must be in 0..1, got ${m[2]}`);
    rates.push([kind, p]);
  }
  if (rates.length === 0) throw bad("no fault kind given");
  return { rates, ...(seed === undefined ? {} : { seed }), ...(after === undefined ? {} : { after }) };
}

/** Decides, task by task, which fault (if any) to inject; counts what it injected. */
export class FaultInjector {
  private readonly random: () => number;
  private tasks = 0;
  readonly injected: Record<FaultKind, number> = { hang: 0, corrupt: 0, shape: 0, fail: 0, exit: 0 };

  constructor(private readonly spec: FaultSpec) {
    this.random = mulberry32(spec.seed ?? randomInt(0, 2 ** 31));
  }

  /** The fault for the runner's next task, or null. */
  next(): FaultKind | null {
    this.tasks++;
    if (this.tasks <= (this.spec.after ?? 0)) return null;
    for (const [kind, p] of this.spec.rates) {
      if (this.random() < p) {
        this.injected[kind]++;
        return kind;
      }
    }
    return null;
  }
}

/** Runs right after a task starts: `hang` waits for the cancel, `fail` throws. */
export async function faultAtStart(kind: FaultKind | null, signal: AbortSignal): Promise<void> {
  if (kind === "fail") {
    throw new LavieError("internal", "injected fault: task failed (LAVIE_FAULTS fail)", { retryable: true });
  }
  if (kind !== "hang") return;
  await new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", () => resolve(), { once: true });
  });
  throw LavieError.from(signal.reason);
}

/**
 * Writes the task's output, misbehaving for `corrupt` and `shape` (other kinds write normally);
 * `exit` ends the process before anything is written.
 */
export async function faultyOutput(
  kind: FaultKind | null,
  store: Pick<NatsTensorStore, "put">,
  name: string,
  out: Tensor,
): Promise<TensorRef> {
  if (kind === "exit") {
    process.stderr.write(`injected fault: exiting mid-task before writing ${name} (LAVIE_FAULTS exit)\n`);
    process.exit(FAULT_EXIT_CODE);
  }
  if (kind === "corrupt") {
    const good = createHash("sha256")
      .update(new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.byteLength))
      .digest("hex");
    const bad = Float32Array.from(out.data);
    if (bad.length > 0) bad[0] = bad[0]! + 1;
    const ref = await store.put(name, { shape: out.shape, data: bad });
    // Empty tensors cannot differ: claim another digest instead.
    return { ...ref, digest: bad.length > 0 ? `sha256:${good}` : `sha256:${"0".repeat(64)}` };
  }
  const ref = await store.put(name, out);
  if (kind === "shape") return { ...ref, shape: wrongShape(ref.shape) };
  return ref;
}

/** Exit code of a runner that `exit` ended. */
export const FAULT_EXIT_CODE = 70;

/** A different shape with the same element count (reversed, or one more axis of size 1). */
function wrongShape(shape: readonly number[]): number[] {
  const reversed = [...shape].reverse();
  return reversed.some((d, i) => d !== shape[i]) ? reversed : [...shape, 1];
}
