/**
 * The autoscaling policy, pure: per stage, how many runner replicas to ask for, from the stage's
 * load (tasks queued and in flight), the slots of one runner and the stage's bounds.
 *
 *   raw = ceil((queued + inFlight) / slots)          (at least 1 while there is any work, and at
 *                                                    least 2 while a CFG gang waits: its members
 *                                                    need distinct runners)
 *   desired = clamp(raw, min, max)
 *
 * - Scale from zero at once: work arriving at a stage with no runners gives desired >= 1 in the
 *   same tick (jobs wait in the queue meanwhile; they do not fail).
 * - Scale to zero only after the stage has been idle (nothing queued, nothing in flight, nothing
 *   upcoming) for `idleSeconds`; until then an idle stage keeps one runner (if it has one).
 * - Upcoming work (tasks of running jobs that wait for an earlier stage) asks for one runner: it is
 *   pre-warmed while the earlier stages run, and not scaled to zero in between.
 * - Stabilisation, like the HorizontalPodAutoscaler: scale up immediately; scale down only to the
 *   highest desired value of the last `downStabilizationSeconds`, so oscillating load does not flap.
 *   (Zero is therefore reached after max(idleSeconds, window since the last non-zero desire).)
 * - Never below the number of runners that have tasks in flight: those are never removed (the
 *   Kubernetes adapter marks them with a high pod-deletion-cost so the ReplicaSet picks idle pods).
 */
import { invalidArgument } from "../../core/errors.ts";

export interface StagePolicy {
  /** Lower bound on replicas (0 allows scale to zero). */
  min: number;
  /** Upper bound on replicas. */
  max: number;
  /** Tasks one runner runs at once (LAVIE_RUNNER_SLOTS of the stage's runners). */
  slotsPerRunner: number;
  /** An idle stage scales to zero only after this long without work. */
  idleSeconds: number;
  /** Scale-down never goes below the highest desired value of this window. */
  downStabilizationSeconds: number;
}

export interface StageLoad {
  queued: number;
  inFlight: number;
  /** Runners of this stage with at least one task in flight (never removed). */
  busyRunners: number;
  /** Distinct runners the queued work needs at least (2 for a waiting CFG gang); default 0. */
  minRunners?: number;
  /**
   * Tasks of this stage that running jobs still have to run but that are not ready yet (their
   * inputs come from an earlier stage). They keep (or bring up) one runner: the stage does not go
   * to zero between a job's early and late tasks, and its cold start overlaps the earlier stages.
   */
  upcoming?: number;
}

/** What the policy remembers between ticks for one stage (plain data; start with initialState()). */
export interface StageState {
  /** Epoch ms since which the stage has had no work, or null while it has work. */
  idleSinceMs: number | null;
  /** Desired values of recent ticks (bounded), for the scale-down stabilisation window. */
  history: { atMs: number; desired: number }[];
}

export interface Decision {
  /** Replicas to set now. */
  replicas: number;
  /** The bounded desired value of this tick before stabilisation. */
  desired: number;
  reason: "scale-up" | "scale-from-zero" | "scale-down" | "scale-to-zero" | "hold";
  state: StageState;
}

export function initialState(): StageState {
  return { idleSinceMs: null, history: [] };
}

export function validatePolicy(p: StagePolicy, name = "policy"): void {
  const int = (v: number, min: number, field: string) => {
    if (!Number.isInteger(v) || v < min)
      throw invalidArgument(`${name}.${field}`, `must be an integer >= ${min}, got ${v}`);
  };
  int(p.min, 0, "min");
  int(p.max, 1, "max");
  int(p.slotsPerRunner, 1, "slotsPerRunner");
  if (p.min > p.max) throw invalidArgument(name, `min (${p.min}) must not exceed max (${p.max})`);
  if (!(p.idleSeconds >= 0)) throw invalidArgument(`${name}.idleSeconds`, "must be >= 0");
  if (!(p.downStabilizationSeconds >= 0))
    throw invalidArgument(`${name}.downStabilizationSeconds`, "must be >= 0");
}

/**
 * One tick for one stage: `current` is the replica count the orchestrator has now (spec.replicas).
 * Pure: the returned state replaces the given one.
 */
export function decide(
  policy: StagePolicy,
  load: StageLoad,
  current: number,
  state: StageState,
  nowMs: number,
): Decision {
  const work = Math.max(0, load.queued) + Math.max(0, load.inFlight);
  const upcoming = Math.max(0, load.upcoming ?? 0);
  const idleSinceMs = work > 0 || upcoming > 0 ? null : (state.idleSinceMs ?? nowMs);
  let raw = 0;
  if (work > 0) {
    raw = Math.max(1, Math.ceil(work / Math.max(1, policy.slotsPerRunner)), load.minRunners ?? 0);
  } else if (upcoming > 0) {
    raw = 1;
  } else if (idleSinceMs !== null && nowMs - idleSinceMs < policy.idleSeconds * 1000) {
    raw = Math.min(current, 1); // idle, but not for long enough to go to zero
  }
  const desired = Math.min(policy.max, Math.max(policy.min, raw));

  const windowMs = policy.downStabilizationSeconds * 1000;
  const history = [...state.history.filter((h) => nowMs - h.atMs < windowMs), { atMs: nowMs, desired }];
  const next: StageState = { idleSinceMs, history };

  let replicas: number;
  if (desired > current) {
    replicas = desired;
  } else {
    const stabilised = Math.max(...history.map((h) => h.desired));
    replicas = Math.min(current, stabilised);
  }
  // Runners with work in flight are never removed (even when max was lowered under them).
  replicas = Math.max(replicas, Math.min(current, load.busyRunners));

  let reason: Decision["reason"] = "hold";
  if (replicas > current) reason = current === 0 ? "scale-from-zero" : "scale-up";
  else if (replicas < current) reason = replicas === 0 ? "scale-to-zero" : "scale-down";
  return { replicas, desired, reason, state: next };
}
