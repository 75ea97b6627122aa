/**
 * The coordinator's telemetry wiring: dispatcher and job hooks that record metrics, scrape-time
 * gauges (queue depth, in-flight tasks, runner utilisation per stage) and a data-plane store that
 * counts bytes. Used by coordinator/server.ts.
 */
import type { Dispatcher, DispatchObserver } from "../../coordinator/distributed/dispatcher.ts";
import type { JobManagerOptions } from "../../coordinator/distributed/jobs.ts";
import type {
  BlobRef,
  RunnerDirectory,
  TensorRef,
  TensorStorePort,
} from "../../coordinator/distributed/ports.ts";
import type { Tensor } from "../../core/tensor.ts";
import { metrics as defaultMetrics, type LavieMetrics, record } from "./metrics.ts";

const STAGES = ["base", "interpolation", "vsr"] as const;

export function dispatchObserver(m: LavieMetrics = defaultMetrics): DispatchObserver {
  return {
    attemptFinished: (stage, outcome, ms) =>
      record(() => {
        m.taskDuration.observe({ stage, outcome, side: "dispatch" }, ms / 1000);
        m.tasks.inc({ stage, outcome, side: "dispatch" });
      }),
    runnerQuarantined: (_runner, reason) => record(() => m.runnerQuarantines.inc({ reason })),
  };
}

/** Admission refusals and the job queue's depth (sampled at each scrape). */
export function admissionMetrics(m: LavieMetrics = defaultMetrics): Pick<JobManagerOptions, "onRefused"> & {
  watch(jobs: { queueStats(): { queued: number; running: number } }): () => void;
} {
  return {
    onRefused: (queue) => record(() => m.jobsRefused.inc({ queue })),
    watch: (jobs) =>
      m.onCollect(() => {
        const s = jobs.queueStats();
        m.jobsWaiting.set(s.queued);
        m.jobsRunning.set(s.running);
      }),
  };
}

export function jobFinishedHook(
  m: LavieMetrics = defaultMetrics,
): NonNullable<JobManagerOptions["onJobFinished"]> {
  return (state, ms) =>
    record(() => {
      m.jobDuration.observe({ outcome: state }, ms / 1000);
      m.jobs.inc({ outcome: state });
    });
}

/** Samples the dispatcher's queues and the runners' slots at each scrape; returns a stop function. */
export function watchDispatcher(
  dispatcher: Pick<Dispatcher, "stats">,
  runners: RunnerDirectory,
  m: LavieMetrics = defaultMetrics,
): () => void {
  return m.onCollect(() => {
    const stats = dispatcher.stats();
    m.runnersQuarantined.set(stats.quarantined?.length ?? 0);
    const live = runners.list();
    const inFlightByRunner = new Map<string, number>();
    const load = (dispatcher as Partial<Pick<Dispatcher, "load">>).load?.();
    for (const [id, n] of Object.entries(load?.inFlightByRunner ?? {})) inFlightByRunner.set(id, n);
    const stages = new Set<string>([...STAGES, ...Object.keys(stats.queued)]);
    for (const stage of stages) {
      m.queueDepth.set({ stage }, stats.queued[stage] ?? 0);
      m.inFlight.set({ stage }, load?.inFlight[stage] ?? 0);
      const serving = live.filter((r) => r.stages.includes(stage));
      m.stageRunners.set({ stage }, serving.length);
      let slots = 0;
      let busy = 0;
      for (const r of serving) {
        slots += r.slots;
        busy += Math.max(r.slots - r.freeSlots, inFlightByRunner.get(r.id) ?? 0);
      }
      m.stageUtilization.set({ stage }, slots > 0 ? Math.min(1, busy / slots) : 0);
    }
  });
}

/** A data-plane store that counts the bytes it puts and gets. */
export function countingStore<S extends TensorStorePort>(inner: S, m: LavieMetrics = defaultMetrics): S {
  const add = (direction: "put" | "get", n: number) => record(() => m.dataplaneBytes.inc({ direction }, n));
  const wrapped: TensorStorePort = {
    put: async (name: string, t: Tensor): Promise<TensorRef> => {
      const ref = await inner.put(name, t);
      add("put", ref.bytes);
      return ref;
    },
    get: async (ref: TensorRef): Promise<Tensor> => {
      const t = await inner.get(ref);
      add("get", t.data.byteLength);
      return t;
    },
    putBytes: async (name, chunks): Promise<BlobRef> => {
      const ref = await inner.putBytes(name, chunks);
      add("put", ref.bytes);
      return ref;
    },
    getBytes: (ref: BlobRef) => {
      const it = inner.getBytes(ref);
      return (async function* () {
        for await (const chunk of it) {
          add("get", chunk.byteLength);
          yield chunk;
        }
      })();
    },
    deletePrefix: (prefix: string) => inner.deletePrefix(prefix),
    stat: (name: string) => inner.stat(name),
  };
  return Object.assign(Object.create(inner) as S, wrapped);
}
