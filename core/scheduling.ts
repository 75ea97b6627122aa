/**
 * Start order of queued work (jobs in the coordinator's queue, tasks in a stage's queue): higher
 * priority first; within a priority, round-robin between tenants, where a tenant that already has
 * work running takes its turn later (its k-th queued item is in round k + running); within a round,
 * the tenant served least recently first, then submit order. So one tenant's hundred queued jobs do
 * not delay another tenant's single job by more than one turn, and a priority always beats a lower
 * one (documented: low priority can starve while higher-priority work keeps arriving).
 */
export interface QueueEntry {
  readonly tenant: string;
  /** Priority rank: higher starts first. */
  readonly rank: number;
  /** Submit order (unique, increasing). */
  readonly seq: number;
}

/**
 * `running`: items running now per tenant; `lastServed`: when each tenant last had an item started
 * (any increasing counter; absent = never).
 */
export function fairOrder<T extends QueueEntry>(
  entries: readonly T[],
  running: ReadonlyMap<string, number>,
  lastServed: ReadonlyMap<string, number> = new Map(),
): T[] {
  const bySeq = [...entries].sort((a, b) => a.seq - b.seq);
  const seen = new Map<string, number>();
  const round = new Map<T, number>();
  for (const e of bySeq) {
    const key = `${e.rank}\u0000${e.tenant}`;
    const k = seen.get(key) ?? 0;
    seen.set(key, k + 1);
    round.set(e, k + (running.get(e.tenant) ?? 0));
  }
  const served = (t: string) => lastServed.get(t) ?? -1;
  return bySeq.sort(
    (a, b) =>
      b.rank - a.rank ||
      round.get(a)! - round.get(b)! ||
      served(a.tenant) - served(b.tenant) ||
      a.seq - b.seq,
  );
}
