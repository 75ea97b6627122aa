/**
 * Runner quarantine, a pure policy: a runner whose task attempts fail `failures` times within
 * `windowMs` (failures that point at the runner: bad outputs - data_loss -, internal errors,
 * attempts that stopped making progress; never cancellations or errors of the job itself) gets no
 * new tasks for `quarantineMs`. A success clears its count; when the quarantine ends the runner
 * starts again from zero. The dispatcher asks `isQuarantined()` when it picks runners.
 *
 *   const q = new QuarantinePolicy({ failures: 3, windowMs: 60_000, quarantineMs: 30_000 });
 *   if (q.failure("r1", "data_loss", clock.now())) log("runner r1 quarantined");
 */
import { type ErrorCode, invalidArgument } from "../../core/errors.ts";

export interface QuarantineOptions {
  /** Failures within `windowMs` that quarantine a runner (default 3; 0 = never quarantine). */
  failures?: number;
  /** The window the failures are counted in (default 60 000 ms). */
  windowMs?: number;
  /** How long a quarantined runner gets no new tasks (default 30 000 ms). */
  quarantineMs?: number;
}

/** The reason of a failure that counts against a runner. */
export type RunnerFault = "data_loss" | "internal" | "stalled";

/** Which attempt failures count against the runner (a cancelled or job-level one does not). */
export function runnerFault(code: ErrorCode, stalled: boolean): RunnerFault | null {
  if (stalled) return "stalled";
  if (code === "data_loss" || code === "internal") return code;
  return null;
}

export interface QuarantinedRunner {
  id: string;
  /** Epoch ms when the quarantine ends. */
  untilMs: number;
  /** The failure that tipped it over. */
  reason: RunnerFault;
}

export class QuarantinePolicy {
  readonly failures: number;
  readonly windowMs: number;
  readonly quarantineMs: number;
  /** Failure times (epoch ms) in the window, per runner not quarantined now. */
  private readonly recent = new Map<string, number[]>();
  private readonly held = new Map<string, QuarantinedRunner>();
  /** Quarantines started since construction. */
  total = 0;

  constructor(opts: QuarantineOptions = {}) {
    this.failures = opts.failures ?? 3;
    this.windowMs = opts.windowMs ?? 60_000;
    this.quarantineMs = opts.quarantineMs ?? 30_000;
    for (const [k, v] of Object.entries({
      failures: this.failures,
      windowMs: this.windowMs,
      quarantineMs: this.quarantineMs,
    })) {
      if (!Number.isSafeInteger(v) || v < 0)
        throw invalidArgument(`quarantine.${k}`, `must be an integer >= 0, got ${v}`);
    }
  }

  /** Records a failure; returns the new quarantine when this failure starts one, else null. */
  failure(id: string, reason: RunnerFault, now: number): QuarantinedRunner | null {
    if (this.failures === 0 || this.isQuarantined(id, now)) return null;
    const times = (this.recent.get(id) ?? []).filter((t) => now - t < this.windowMs);
    times.push(now);
    if (times.length < this.failures) {
      this.recent.set(id, times);
      return null;
    }
    this.recent.delete(id);
    const q: QuarantinedRunner = { id, untilMs: now + this.quarantineMs, reason };
    this.held.set(id, q);
    this.total++;
    return q;
  }

  /** A successful attempt: the runner's failure count starts again. */
  success(id: string): void {
    this.recent.delete(id);
  }

  isQuarantined(id: string, now: number): boolean {
    const q = this.held.get(id);
    if (!q) return false;
    if (now < q.untilMs) return true;
    this.held.delete(id);
    return false;
  }

  /** Runners quarantined now. */
  list(now: number): QuarantinedRunner[] {
    return [...this.held.values()].filter((q) => this.isQuarantined(q.id, now)).map((q) => ({ ...q }));
  }
}
