/**
 * Per-stage progress for the CLI: one line per stage with a bar, denoising steps done/total and an
 * ETA from the stage's rate so far. Redrawn in place on a TTY; on pipes, one line per finished task
 * (in-process) or per finished stage (remote).
 *
 * StageProgress follows an in-process run (executor events, totals from the plan);
 * RemoteStageProgress follows a coordinator job (watch events, totals from GetJob's progress field).
 */
import type { ExecutorEvent } from "../../coordinator/executor/local.ts";
import type { Plan, StageName } from "../../coordinator/plan/types.ts";
import type { JobEvent, StageProgress as JobStageProgress } from "../sdk/client.ts";

interface StageState {
  total: number;
  done: number;
  started: number | null;
  finished: number | null;
}

const STAGES: readonly string[] = ["base", "interpolation", "vsr"];

/** The bars: state per stage and their rendering. */
class StageBars {
  readonly stages = new Map<string, StageState>();
  private drawn = 0;
  readonly tty: boolean;

  constructor(readonly stream: NodeJS.WriteStream) {
    this.tty = Boolean(stream.isTTY);
  }

  stage(name: string): StageState {
    let s = this.stages.get(name);
    if (!s) {
      s = { total: 0, done: 0, started: null, finished: null };
      this.stages.set(name, s);
    }
    return s;
  }

  line(name: string, s: StageState): string {
    const width = 24;
    const frac = s.total ? Math.min(1, s.done / s.total) : s.finished !== null ? 1 : 0;
    const bar = "#".repeat(Math.round(frac * width)).padEnd(width, "-");
    const elapsed = s.started === null ? 0 : ((s.finished ?? performance.now()) - s.started) / 1000;
    let tail = "";
    if (s.finished !== null) tail = `done in ${elapsed.toFixed(1)}s`;
    else if (s.done > 0 && s.total > 0) tail = `ETA ${((elapsed / s.done) * (s.total - s.done)).toFixed(1)}s`;
    const total = s.total ? String(s.total) : "?";
    return `${name.padEnd(13)} [${bar}] ${String(s.done).padStart(4)}/${total} steps  ${tail}`;
  }

  redraw(): void {
    if (this.drawn) this.stream.write(`\x1b[${this.drawn}F`);
    let n = 0;
    const names = [
      ...STAGES.filter((s) => this.stages.has(s)),
      ...[...this.stages.keys()].filter((s) => !STAGES.includes(s)),
    ];
    for (const name of names) {
      this.stream.write(`\x1b[2K${this.line(name, this.stages.get(name)!)}\n`);
      n++;
    }
    this.drawn = n;
  }
}

export class StageProgress {
  private readonly bars: StageBars;
  private readonly perTask = new Map<string, number>();

  constructor(plan: Plan, stream: NodeJS.WriteStream = process.stderr) {
    this.bars = new StageBars(stream);
    for (const t of plan.tasks) this.bars.stage(t.stage).total += t.units;
  }

  onEvent(e: ExecutorEvent): void {
    const s = this.bars.stage(e.task.stage);
    const now = performance.now();
    if (e.type === "task_started") s.started ??= now;
    if (e.type === "task_progress" || e.type === "task_finished") {
      const prev = this.perTask.get(e.task.id) ?? 0;
      const cur = e.type === "task_finished" ? e.task.units : e.done;
      s.done += cur - prev;
      this.perTask.set(e.task.id, cur);
      if (s.done >= s.total) s.finished ??= now;
    }
    if (this.bars.tty) this.bars.redraw();
    else if (e.type === "task_finished")
      this.bars.stream.write(`${this.bars.line(e.task.stage as StageName, s)}  (${e.task.id})\n`);
  }
}

/**
 * Progress of a job on a coordinator. Steps done are counted from task_progress events (per task,
 * so repeats after a reconnect or a retried task never count twice); setTotals() takes the job's
 * progress snapshot (GetJob), which also corrects the counts for tasks that report no steps.
 */
export class RemoteStageProgress {
  private readonly bars: StageBars;
  private readonly perTask = new Map<string, number>();

  constructor(stream: NodeJS.WriteStream = process.stderr) {
    this.bars = new StageBars(stream);
  }

  /** True once totals are known for `stage`. */
  hasTotals(stage: string): boolean {
    return (this.bars.stages.get(stage)?.total ?? 0) > 0;
  }

  setTotals(progress: readonly JobStageProgress[]): void {
    for (const p of progress) {
      const s = this.bars.stage(p.stage);
      s.total = p.stepsTotal;
      s.done = Math.max(s.done, p.stepsDone);
      if (p.stepsDone > 0) s.started ??= performance.now();
      if (p.tasksTotal > 0 && p.tasksDone >= p.tasksTotal) s.finished ??= performance.now();
    }
    if (this.bars.tty) this.bars.redraw();
  }

  onEvent(e: JobEvent): void {
    const now = performance.now();
    switch (e.type) {
      case "stage_started":
        this.bars.stage(e.stage).started ??= now;
        break;
      case "task_progress": {
        const s = this.bars.stage(e.stage);
        s.started ??= now;
        const prev = this.perTask.get(e.taskId) ?? 0;
        if (e.step > prev) {
          s.done += e.step - prev;
          this.perTask.set(e.taskId, e.step);
        }
        break;
      }
      case "stage_finished": {
        const s = this.bars.stage(e.stage);
        s.started ??= now - e.millis;
        s.finished ??= now;
        if (s.total) s.done = s.total;
        if (!this.bars.tty) this.bars.stream.write(`${this.bars.line(e.stage, s)}\n`);
        break;
      }
      case "done":
        for (const s of this.bars.stages.values()) {
          s.finished ??= now;
          if (s.total) s.done = s.total;
        }
        break;
      default:
        return;
    }
    if (this.bars.tty) this.bars.redraw();
  }
}
