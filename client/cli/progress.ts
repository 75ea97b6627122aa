/**
 * Per-stage progress for the CLI: one line per stage with a bar, denoising steps done/total and an
 * ETA from the stage's rate so far. Redrawn in place on a TTY; on pipes, one line per finished task.
 */
import type { ExecutorEvent } from "../../coordinator/executor/local.ts";
import type { Plan, StageName } from "../../coordinator/plan/types.ts";

interface StageState {
  total: number;
  done: number;
  started: number | null;
  finished: number | null;
}

const STAGES: readonly StageName[] = ["base", "interpolation", "vsr"];

export class StageProgress {
  private readonly stages = new Map<StageName, StageState>();
  private readonly perTask = new Map<string, number>();
  private drawn = 0;
  private readonly tty: boolean;

  constructor(
    plan: Plan,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {
    this.tty = Boolean(stream.isTTY);
    for (const t of plan.tasks) {
      const s = this.stages.get(t.stage) ?? { total: 0, done: 0, started: null, finished: null };
      s.total += t.units;
      this.stages.set(t.stage, s);
    }
  }

  onEvent(e: ExecutorEvent): void {
    const s = this.stages.get(e.task.stage)!;
    const now = performance.now();
    if (e.type === "task_started") s.started ??= now;
    if (e.type === "task_progress" || e.type === "task_finished") {
      const prev = this.perTask.get(e.task.id) ?? 0;
      const cur = e.type === "task_finished" ? e.task.units : e.done;
      s.done += cur - prev;
      this.perTask.set(e.task.id, cur);
      if (s.done >= s.total) s.finished ??= now;
    }
    if (this.tty) this.redraw();
    else if (e.type === "task_finished") this.stream.write(`${this.line(e.task.stage, s)}  (${e.task.id})\n`);
  }

  private line(name: StageName, s: StageState): string {
    const width = 24;
    const frac = s.total ? s.done / s.total : 1;
    const bar = "#".repeat(Math.round(frac * width)).padEnd(width, "-");
    const elapsed = s.started === null ? 0 : ((s.finished ?? performance.now()) - s.started) / 1000;
    let tail = "";
    if (s.finished !== null) tail = `done in ${elapsed.toFixed(1)}s`;
    else if (s.done > 0) tail = `ETA ${((elapsed / s.done) * (s.total - s.done)).toFixed(1)}s`;
    return `${name.padEnd(13)} [${bar}] ${String(s.done).padStart(4)}/${s.total} steps  ${tail}`;
  }

  private redraw(): void {
    if (this.drawn) this.stream.write(`\x1b[${this.drawn}F`);
    let n = 0;
    for (const name of STAGES) {
      const s = this.stages.get(name);
      if (!s) continue;
      this.stream.write(`\x1b[2K${this.line(name, s)}\n`);
      n++;
    }
    this.drawn = n;
  }
}
