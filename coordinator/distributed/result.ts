/**
 * The final video: frames are assembled from the result tensor's tiles one frame group at a time
 * (fetched from the data plane, blended, converted to rgb24), streamed into the MP4 encoder, and the
 * file is stored in the data plane. At most two small frame groups (or one large one) are in memory.
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

/**
 * Frame groups whose tiles take at most this many bytes are fetched one group ahead, overlapping
 * data-plane reads with encoding; larger groups (full-size output: 126 MB) are fetched one at a time
 * to keep the coordinator's memory at about one group.
 */
export const PREFETCH_MAX_BYTES = 64 * 1024 * 1024;

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
  const boxOf = (g: { start: number; size: number }) => ({
    start: [0, 0, g.start, 0, 0],
    size: [1, 3, g.size, H, W],
  });
  const fetch = (g: { start: number; size: number }): Promise<Map<number, Tensor>> => {
    const ids = tilesCovering(tp, boxOf(g));
    const p = Promise.all(ids.map((i) => store.get(refs(i)))).then(
      (data) => new Map(ids.map((i, k) => [i, data[k]!])),
    );
    // A prefetch the consumer never awaits (it stopped early) must not become an unhandled rejection.
    p.catch(() => {});
    return p;
  };
  const bytesOf = (g: { start: number; size: number }) =>
    tilesCovering(tp, boxOf(g)).reduce((n, i) => n + refs(i).bytes, 0);
  let next: Promise<Map<number, Tensor>> | null = groups[0] ? fetch(groups[0]) : null;
  for (let k = 0; k < groups.length; k++) {
    const g = groups[k]!;
    const tiles = await next!;
    const following = groups[k + 1];
    next = null;
    if (following && bytesOf(following) <= PREFETCH_MAX_BYTES) next = fetch(following);
    const t = assembleBox(tp, boxOf(g), (i) => tiles.get(i)!);
    tiles.clear();
    for (let f = 0; f < g.size; f++) {
      const out = new Uint8Array(hw * 3);
      for (let c = 0; c < 3; c++) {
        const base = (c * g.size + f) * hw;
        for (let i = 0; i < hw; i++) out[i * 3 + c] = floatToByte(t.data[base + i]!);
      }
      yield out;
    }
    if (following && !next) next = fetch(following);
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
