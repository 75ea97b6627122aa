import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { LavieError } from "../core/errors.ts";
import { readSafetensors } from "../models/checkpoint/safetensors.ts";
import { buildDataset, type DatasetOptions, writeDataset } from "./dataset.ts";
import { parseCaption } from "./parse.ts";
import { boxDownsample, renderClip } from "./render.ts";
import { isHeldOut } from "./sample.ts";
import { COLOURS, checkScene, MOTIONS, SHAPES } from "./scene.ts";

const root = mkdtempSync(join(tmpdir(), "lavie-world-"));
after(() => rmSync(root, { recursive: true, force: true }));

const base: DatasetOptions = {
  count: 6,
  seed: 7,
  height: 16,
  width: 24,
  frames: 4,
  fps: 2,
  split: "train",
  twoObjects: 0.5,
  captions: 3,
  dtype: "F32",
  variants: ["fps4", "res4"],
};

test("a dataset file holds the clips, their variants, labels and captions, and reads back", async () => {
  const path = join(root, "d.safetensors");
  const d = await writeDataset(path, base);
  const { tensors, metadata } = await readSafetensors(path);
  assert.deepEqual([...tensors.keys()].sort(), ["labels", "objects", "video", "video_fps4", "video_res4"]);
  assert.deepEqual(tensors.get("video")!.shape, [6, 3, 4, 16, 24]);
  assert.deepEqual(tensors.get("video_fps4")!.shape, [6, 3, 13, 16, 24]);
  assert.deepEqual(tensors.get("video_res4")!.shape, [6, 3, 4, 64, 96]);
  const video = await tensors.get("video")!.readFloat32();
  const fps4 = await tensors.get("video_fps4")!.readFloat32();
  const res4 = await tensors.get("video_res4")!.readFloat32();
  const per = 3 * 4 * 16 * 24;
  assert.ok(metadata);
  assert.equal(metadata.format, "lavie-world/1");
  const scenes = JSON.parse(metadata.scenes!).map(checkScene);
  const captions: string[][] = JSON.parse(metadata.captions!);
  assert.deepEqual(scenes, d.scenes);
  assert.deepEqual(JSON.parse(metadata.splits!), Array(6).fill("train"));
  const config = JSON.parse(metadata.config!);
  assert.deepEqual(config.variants.video_fps4, { frames: 13, fps: 8, height: 16, width: 24 });
  const labels = (await tensors.get("labels")!.read()) as BigInt64Array;
  scenes.forEach((s, n) => {
    // Clip n is the render of scene n; frame 4k of its fps4 variant is frame k; res4 boxes down to it.
    const clip = renderClip(s, base);
    assert.deepEqual(video.subarray(n * per, (n + 1) * per), clip.data);
    for (let c = 0; c < 3; c++)
      for (let k = 0; k < 4; k++) {
        const a = video.subarray(n * per + (c * 4 + k) * 384, n * per + (c * 4 + k + 1) * 384);
        const at = (n * 3 * 13 + c * 13 + 4 * k) * 384;
        assert.deepEqual(fps4.subarray(at, at + 384), a);
      }
    const hi = { shape: [3, 4, 64, 96], data: res4.subarray(n * per * 16, (n + 1) * per * 16) };
    if (s.background.kind === "plain") {
      const down = boxDownsample(hi, 4).data;
      for (let i = 0; i < per; i++) assert.ok(Math.abs(down[i]! - clip.data[i]!) < 1e-5);
    }
    // Labels and captions describe the scene; the training split holds no held-out triple.
    s.objects.forEach((o, k) => {
      const l = [...labels.subarray((n * 2 + k) * 5, (n * 2 + k) * 5 + 3)].map(Number);
      assert.deepEqual(l, [COLOURS.indexOf(o.colour), SHAPES.indexOf(o.shape), MOTIONS.indexOf(o.motion)]);
      assert.ok(!isHeldOut(o));
    });
    if (s.objects.length === 1) assert.equal(labels[(n * 2 + 1) * 5], -1n);
    assert.equal(captions[n]!.length, 3);
    for (const text of captions[n]!) {
      const p = parseCaption(text);
      assert.deepEqual(
        p.objects.map((o) => [o.colour, o.shape, o.motion]),
        s.objects.map((o) => [o.colour, o.shape, o.motion]),
      );
    }
  });
});

test("the same options give the same file; F16 halves the video bytes", async () => {
  const a = join(root, "a.safetensors");
  const b = join(root, "b.safetensors");
  const opts = { ...base, variants: [] };
  await writeDataset(a, opts);
  await writeDataset(b, opts);
  assert.deepEqual(readFileSync(a), readFileSync(b));
  const h = join(root, "h.safetensors");
  await writeDataset(h, { ...opts, dtype: "F16" });
  const v = (await readSafetensors(h)).tensors.get("video")!;
  assert.equal(v.dtype, "F16");
  const f32 = (await readSafetensors(a)).tensors.get("video")!;
  const x = await v.readFloat32();
  const y = await f32.readFloat32();
  for (let i = 0; i < x.length; i++) assert.ok(Math.abs(x[i]! - y[i]!) < 1e-3);
});

test("bad dataset options are refused naming the field and what is allowed", () => {
  const bad = (o: Partial<DatasetOptions>, re: RegExp) =>
    assert.throws(
      () => buildDataset({ ...base, ...o }),
      (e: unknown) => e instanceof LavieError && e.code === "invalid_argument" && re.test(e.message),
    );
  bad({ count: 0 }, /^count: must be a positive integer/);
  bad({ frames: 0 }, /^frames: must be an integer in \[1, 1024\]/);
  bad({ captions: 17 }, /^captions: must be an integer in \[1, 16\]/);
  bad({ variants: ["fps8" as never] }, /unknown variant "fps8"; allowed: fps4, res4, fps4_res4/);
  bad({ count: 300, height: 256, width: 384, frames: 16, variants: ["fps4"] }, /^count: at most \d+ clips/);
});
