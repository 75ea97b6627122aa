/**
 * Time as a dependency. Code that reads the time or waits takes a Clock, so its tests drive time
 * with a ManualClock (no sleeps as synchronisation, no assertions on wall-clock durations):
 *
 *   const clock = new ManualClock();
 *   const d = new Dispatcher(runners, client, { clock, progressTimeoutMs: 40 });
 *   const out = await clock.until(d.submit(...));   // advances time until the promise settles
 *
 * systemClock is the real one (Date.now, setTimeout).
 */
import { LavieError } from "./errors.ts";

export interface Timer {
  /** Stops the timer; calling it after the timer ran does nothing. */
  cancel(): void;
  /** Lets the process exit while only this timer is pending (as Node's timer.unref()). */
  unref(): Timer;
}

export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  /** Calls fn once, ms from now. */
  setTimeout(fn: () => void, ms: number): Timer;
  /** Resolves ms from now; rejects with the signal's reason when it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

function sleepOn(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      timer.cancel();
      reject(signal?.reason);
    };
    const timer = clock.setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    const timer: Timer = {
      cancel: () => clearTimeout(t),
      unref: () => {
        t.unref();
        return timer;
      },
    };
    return timer;
  },
  sleep(ms, signal) {
    return sleepOn(systemClock, ms, signal);
  },
};

interface Pending {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/** Lets every promise callback queued so far run, and the I/O callbacks of one loop turn. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
}

/**
 * A clock that moves only when told to. Timers run in due order (ties: the order they were set),
 * with now() at their due time, and the promise callbacks they cause settle before the next one.
 */
export class ManualClock implements Clock {
  private t: number;
  private seq = 0;
  private timers: Pending[] = [];

  /** Starts at startMs epoch ms (default: 2024-01-01T00:00:00Z, a plausible "now"). */
  constructor(startMs = Date.UTC(2024, 0, 1)) {
    this.t = startMs;
  }

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    const p: Pending = { at: this.t + Math.max(0, ms), seq: this.seq++, fn, cancelled: false };
    this.timers.push(p);
    const timer: Timer = {
      cancel: () => {
        p.cancelled = true;
      },
      unref: () => timer,
    };
    return timer;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepOn(this, ms, signal);
  }

  /** Timers set and not yet run or cancelled. */
  get pending(): number {
    return this.timers.filter((p) => !p.cancelled).length;
  }

  /** Moves time forward by ms, running every timer that falls due on the way (see the class). */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    await settle();
    for (;;) {
      this.timers = this.timers.filter((p) => !p.cancelled);
      let next: Pending | undefined;
      for (const p of this.timers) {
        if (p.at <= end && (!next || p.at < next.at || (p.at === next.at && p.seq < next.seq))) next = p;
      }
      if (!next) break;
      this.timers.splice(this.timers.indexOf(next), 1);
      this.t = Math.max(this.t, next.at);
      next.fn();
      await settle();
    }
    this.t = end;
  }

  /**
   * Advances time in steps of stepMs until `promise` settles; its result. Fails when it has not
   * settled after maxMs of clock time (so a test that would hang fails instead, naming `what`).
   */
  async until<T>(promise: Promise<T>, stepMs = 1, maxMs = 600_000, what = "the promise"): Promise<T> {
    let done = false;
    const watched = promise.finally(() => {
      done = true;
    });
    watched.catch(() => {}); // the caller gets the rejection from the return value
    await settle();
    const start = this.t;
    while (!done) {
      if (this.t - start >= maxMs)
        throw new LavieError("deadline_exceeded", `${what} did not settle within ${maxMs} ms of clock time`);
      await this.advance(stepMs);
    }
    return watched;
  }
}
