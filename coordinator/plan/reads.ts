/** Which tensor boxes a task reads: the one place that knows each task kind's inputs. */
import type { Task, TensorRead } from "./types.ts";

/** The reads of a task, with the name of the task field each comes from. */
export function taskReads(task: Task): { field: string; read: TensorRead }[] {
  switch (task.kind) {
    case "text":
      return [];
    case "base_denoise":
      return [{ field: "text", read: task.text }];
    case "vae_decode":
    case "vae_encode":
      return [{ field: "input", read: task.input }];
    case "interp_denoise":
      return [
        { field: "text", read: task.text },
        { field: "cond", read: task.cond },
      ];
    case "vsr_denoise":
      return [
        { field: "text", read: task.text },
        { field: "lowRes", read: task.lowRes },
      ];
  }
}

export function readsOf(task: Task): TensorRead[] {
  return taskReads(task).map((r) => r.read);
}
