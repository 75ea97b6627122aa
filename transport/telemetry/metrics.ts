/**
 * The Prometheus metrics of lavie-serve (prom-client), in one registry per process. The
 * coordinator sets the queue, dispatch and job metrics; runners the execution metrics; both count
 * data-plane bytes. Recording never throws into the application.
 *
 *   lavie_stage_queue_depth{stage}                 tasks waiting for a runner (coordinator)
 *   lavie_stage_tasks_in_flight{stage}             task attempts running on runners (coordinator)
 *   lavie_stage_runner_utilization{stage}          busy slots / slots of the stage's runners (coordinator)
 *   lavie_stage_runners{stage}                     live runners serving the stage (coordinator)
 *   lavie_task_duration_seconds{stage,outcome,side} task attempt latency (side: dispatch | runner)
 *   lavie_tasks_total{stage,outcome,side}          task attempts finished (throughput)
 *   lavie_step_duration_seconds{stage}             one denoising step (runner)
 *   lavie_runner_busy_slots / lavie_runner_slots   this runner's slots (runner)
 *   lavie_runner_utilization                       busy slots / slots (runner)
 *   lavie_cold_starts_total{stage,network}         ONNX sessions loaded on demand or at warm-up (runner)
 *   lavie_job_duration_seconds{outcome}            submit -> terminal state (coordinator)
 *   lavie_jobs_total{outcome}                      jobs finished (coordinator)
 *   lavie_dataplane_bytes_total{direction}         bytes put to / got from the data plane
 *   lavie_runners_quarantined                      runners getting no new tasks now (coordinator)
 *   lavie_runner_quarantines_total{reason}         quarantines started (reason: data_loss | internal | stalled)
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

const LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const JOB_BUCKETS = [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 3600];

export class LavieMetrics {
  readonly registry = new Registry();
  private readonly collectors = new Set<() => void>();
  readonly queueDepth = new Gauge({
    name: "lavie_stage_queue_depth",
    help: "Tasks of the stage waiting for a runner slot",
    labelNames: ["stage"] as const,
    registers: [this.registry],
    // Sampled gauges (queue depth, in-flight, utilisation) are set at scrape time.
    collect: () => {
      for (const fn of this.collectors) record(fn);
    },
  });
  readonly inFlight = new Gauge({
    name: "lavie_stage_tasks_in_flight",
    help: "Task attempts of the stage running on runners",
    labelNames: ["stage"] as const,
    registers: [this.registry],
  });
  readonly stageUtilization = new Gauge({
    name: "lavie_stage_runner_utilization",
    help: "Busy slots / slots over the live runners serving the stage (0..1)",
    labelNames: ["stage"] as const,
    registers: [this.registry],
  });
  readonly stageRunners = new Gauge({
    name: "lavie_stage_runners",
    help: "Live runners serving the stage",
    labelNames: ["stage"] as const,
    registers: [this.registry],
  });
  readonly taskDuration = new Histogram({
    name: "lavie_task_duration_seconds",
    help: "Task attempt latency (side=dispatch: coordinator round trip; side=runner: execution)",
    labelNames: ["stage", "outcome", "side"] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly tasks = new Counter({
    name: "lavie_tasks_total",
    help: "Task attempts finished",
    labelNames: ["stage", "outcome", "side"] as const,
    registers: [this.registry],
  });
  readonly stepDuration = new Histogram({
    name: "lavie_step_duration_seconds",
    help: "One denoising step (UNet run, guidance, sampler update)",
    labelNames: ["stage"] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly busySlots = new Gauge({
    name: "lavie_runner_busy_slots",
    help: "Slots of this runner running a task",
    registers: [this.registry],
  });
  readonly slots = new Gauge({
    name: "lavie_runner_slots",
    help: "Slots of this runner",
    registers: [this.registry],
  });
  readonly utilization = new Gauge({
    name: "lavie_runner_utilization",
    help: "Busy slots / slots of this runner (0..1)",
    registers: [this.registry],
  });
  readonly coldStarts = new Counter({
    name: "lavie_cold_starts_total",
    help: "ONNX sessions loaded (at warm-up or on a task's first use)",
    labelNames: ["stage", "network"] as const,
    registers: [this.registry],
  });
  readonly jobDuration = new Histogram({
    name: "lavie_job_duration_seconds",
    help: "Job end-to-end latency: submit to a terminal state",
    labelNames: ["outcome"] as const,
    buckets: JOB_BUCKETS,
    registers: [this.registry],
  });
  readonly jobs = new Counter({
    name: "lavie_jobs_total",
    help: "Jobs that reached a terminal state",
    labelNames: ["outcome"] as const,
    registers: [this.registry],
  });
  readonly jobsRefused = new Counter({
    name: "lavie_jobs_refused_total",
    help: "Submits refused by admission control (RESOURCE_EXHAUSTED), by the full queue: tenant or global",
    labelNames: ["queue"] as const,
    registers: [this.registry],
  });
  readonly jobsWaiting = new Gauge({
    name: "lavie_jobs_queued",
    help: "Jobs waiting to start (admitted, not running yet)",
    registers: [this.registry],
  });
  readonly jobsRunning = new Gauge({
    name: "lavie_jobs_running",
    help: "Jobs running now",
    registers: [this.registry],
  });
  readonly dataplaneBytes = new Counter({
    name: "lavie_dataplane_bytes_total",
    help: "Bytes put to (direction=put) or read from (direction=get) the data plane",
    labelNames: ["direction"] as const,
    registers: [this.registry],
  });

  readonly runnersQuarantined = new Gauge({
    name: "lavie_runners_quarantined",
    help: "Runners quarantined now after repeated failures (no new tasks)",
    registers: [this.registry],
  });
  readonly runnerQuarantines = new Counter({
    name: "lavie_runner_quarantines_total",
    help: "Runner quarantines started, by the failure that started them",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });

  private defaults = false;

  /** Runs fn at each scrape (before the gauges are read); returns a function that removes it. */
  onCollect(fn: () => void): () => void {
    this.collectors.add(fn);
    return () => this.collectors.delete(fn);
  }

  /** Adds the process metrics (CPU, memory, event loop) of prom-client, once. */
  withProcessMetrics(): this {
    if (!this.defaults) {
      this.defaults = true;
      collectDefaultMetrics({ register: this.registry });
    }
    return this;
  }
}

/** The process-wide metrics (each process has one role; unused metrics stay empty). */
export const metrics = new LavieMetrics();

/** Runs fn, swallowing anything it throws: recording a metric never fails the caller. */
export function record(fn: () => void): void {
  try {
    fn();
  } catch {
    // telemetry never throws into the application
  }
}
