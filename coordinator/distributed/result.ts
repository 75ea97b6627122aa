/**
 * The final video: frames are assembled from the result tensor's tiles one frame group at a time
 * (fetched from the data plane, blended, converted to rgb24), streamed into the MP4 encoder, and the
 * file is stored in the data plane. Only one frame group's tiles are in memory at once.
 */
import { createReadStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Tensor } from "../../core/tensor.ts";
import { assembleBox, tilesCovering } from "../../core/tiling/index.ts";
import { floatToByte } from "../../media/convert.ts";
import { encodeVideo } from "../../media/index.ts";
import type { Plan } from "../plan/types.ts";
import type { TensorRef, TensorStorePort, VideoResult } from "./ports.ts";

/** rgb24 frames of the plan's result tensor [1, 3, F, H, W], fetching tiles frame group by group. */
export async function* resultFrames(
  plan: Plan,
  refs: (tile: number) => TensorRef,
  store: TensorStorePort,
): AsyncGenerator<Uint8Array> {
  const tp = plan.tensors[plan.result]!.tiles;
  const [, , F, H, W] = tp.shape as [number, number, number, number, number];
  const frameAxis = tp.axes.find((a) => a.axis === 2);
  const groups = frameAxis ? frameAxis.windows : [{ start: 0, size: F }];
  const hw = H * W;
  for (const g of groups) {
    const box = { start: [0, 0, g.start, 0, 0], size: [1, 3, g.size, H, W] };
    const tiles = new Map<number, Tensor>();
    for (const i of tilesCovering(tp, box)) tiles.set(i, await store.get(refs(i)));
    const t = assembleBox(tp, box, (i) => tiles.get(i)!);
    for (let f = 0; f < g.size; f++) {
      const out = new Uint8Array(hw * 3);
      for (let c = 0; c < 3; c++) {
        const base = (c * g.size + f) * hw;
        for (let i = 0; i < hw; i++) out[i * 3 + c] = floatToByte(t.data[base + i]!);
      }
      yield out;
    }
  }
}

/** Encodes the result to MP4 and stores it as `object`. */
export async function storeResultVideo(
  plan: Plan,
  refs: (tile: number) => TensorRef,
  store: TensorStorePort,
  object: string,
): Promise<VideoResult> {
  const [, , F, H, W] = plan.tensors[plan.result]!.tiles.shape as number[];
  const dir = await mkdtemp(join(tmpdir(), "lavie-result-"));
  try {
    const path = join(dir, "video.mp4");
    await encodeVideo(path, resultFrames(plan, refs, store), { width: W!, height: H!, fps: plan.fps });
    const blob = await store.putBytes(object, createReadStream(path, { highWaterMark: 1 << 20 }));
    return { ...blob, frames: F!, width: W!, height: H!, fps: plan.fps, contentType: "video/mp4" };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
