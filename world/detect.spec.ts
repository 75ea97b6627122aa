import assert from "node:assert/strict";
import { test } from "node:test";
import { mulberry32 } from "../core/prng.ts";
import type { Tensor } from "../core/tensor.ts";
import { captionOf } from "./captions.ts";
import { detect, detectObjects, matchCaption, motionOf } from "./detect.ts";
import { parseCaption } from "./parse.ts";
import { renderClip } from "./render.ts";
import { placeObjects, sampleScenes } from "./sample.ts";
import {
  type Background,
  COLOURS,
  contrasts,
  MOTIONS,
  type Motion,
  type Scene,
  SHAPES,
  SIZE_CLASSES,
  speedClassOf,
  tonesOf,
} from "./scene.ts";

const BACKGROUNDS: Background[] = [
  { kind: "plain", tone: "black" },
  { kind: "plain", tone: "gray" },
  { kind: "plain", tone: "white" },
  { kind: "gradient", direction: "vertical", from: "black", to: "white" },
  { kind: "gradient", direction: "horizontal", from: "gray", to: "black" },
];

/** One scene per colour x shape x motion (or per colour x shape with `motionOf`), seeded. */
function combos(seed: number, motionFor?: (ci: number, si: number) => Motion): Scene[] {
  const rng = mulberry32(seed);
  const out: Scene[] = [];
  COLOURS.forEach((colour, ci) => {
    SHAPES.forEach((shape, si) => {
      for (const motion of motionFor ? [motionFor(ci, si)] : MOTIONS) {
        const fits = BACKGROUNDS.filter((b) => tonesOf(b).every((t) => contrasts(colour, t)));
        const bg = fits[Math.floor(rng() * fits.length)]!;
        const sizeClass = SIZE_CLASSES[out.length % 3]!;
        const speedClass = rng() < 0.5 ? "slow" : "fast";
        out.push(placeObjects([{ colour, shape, motion, sizeClass, speedClass }], bg, rng, true)!);
      }
    });
  });
  return out;
}

/** Detects every scene's object at H x W (frames at `fps`) and lists what it got wrong. */
function checkAll(
  scenes: Scene[],
  H: number,
  W: number,
  degrade: (t: Tensor, i: number) => Tensor = (t) => t,
  clip = { frames: 16, fps: 8 },
) {
  const wrong: string[] = [];
  let minConfidence = 1;
  scenes.forEach((s, i) => {
    const o = s.objects[0]!;
    const d = detect(degrade(renderClip(s, { height: H, width: W, ...clip }), i), { fps: clip.fps });
    const ok =
      d &&
      d.colour === o.colour &&
      d.shape === o.shape &&
      d.motion === o.motion &&
      d.speed === speedClassOf(o);
    if (!ok)
      wrong.push(`${captionOf(s)} -> ${d ? `${d.colour} ${d.shape} ${d.motion} ${d.speed}` : "nothing"}`);
    else {
      minConfidence = Math.min(minConfidence, d.confidence);
      assert.ok(Math.abs(d.size - o.size) < 0.03, `size ${d.size} for ${o.size}`);
    }
  });
  return { wrong, minConfidence };
}

test("clean renders at 32x48: every colour x shape x motion is detected right, with high confidence", () => {
  const { wrong, minConfidence } = checkAll(combos(1), 32, 48);
  assert.deepEqual(wrong, []);
  assert.ok(minConfidence > 0.9, `min confidence ${minConfidence}`);
});

test("clean renders at 64x96: every colour x shape x motion detected right (8 frames at 4 fps, same span)", () => {
  const { wrong, minConfidence } = checkAll(combos(2), 64, 96, undefined, { frames: 8, fps: 4 });
  assert.deepEqual(wrong, []);
  assert.ok(minConfidence > 0.9, `min confidence ${minConfidence}`);
});

test("two-object scenes: both objects found with their attributes, the caption matches", () => {
  for (const s of sampleScenes(3, 25, { split: "any", twoObjects: 1 })) {
    const found = detectObjects(renderClip(s, { height: 32, width: 48, frames: 16, fps: 8 }));
    assert.equal(found.length, 2, captionOf(s));
    for (const o of s.objects) {
      const d = found.find((f) => f.colour === o.colour);
      assert.ok(d && d.shape === o.shape && d.motion === o.motion, `${captionOf(s)}: ${JSON.stringify(d)}`);
    }
    assert.ok(found[0]!.area >= found[1]!.area);
    assert.ok(matchCaption(found, parseCaption(captionOf(s))).ok);
  }
});

function gaussian(t: Tensor, sigma: number, seed: number): Tensor {
  const rng = mulberry32(seed);
  const data = t.data.slice();
  for (let i = 0; i < data.length; i++) {
    const u = Math.max(1e-12, rng());
    data[i]! += sigma * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
  }
  return { shape: t.shape, data };
}

/** 3x3 box blur of every frame (edges clamped). */
function blur3(t: Tensor): Tensor {
  const s = t.shape;
  const H = s[s.length - 2]!;
  const W = s[s.length - 1]!;
  const data = new Float32Array(t.data.length);
  for (let p = 0; p < t.data.length / (H * W); p++)
    for (let i = 0; i < H; i++)
      for (let j = 0; j < W; j++) {
        let a = 0;
        for (let di = -1; di <= 1; di++)
          for (let dj = -1; dj <= 1; dj++) {
            const ii = Math.min(H - 1, Math.max(0, i + di));
            const jj = Math.min(W - 1, Math.max(0, j + dj));
            a += t.data[p * H * W + ii * W + jj]!;
          }
        data[p * H * W + i * W + j] = a / 9;
      }
  return { shape: s, data };
}

test("robust at 32x48 to noise (sigma 0.2 of the [-1, 1] range), blur (3x3 box) and both", () => {
  const scenes = combos(4, (ci, si) => MOTIONS[(ci + si) % 5]!);
  assert.deepEqual(checkAll(scenes, 32, 48, (t, i) => gaussian(t, 0.2, i)).wrong, []);
  assert.deepEqual(checkAll(scenes, 32, 48, blur3).wrong, []);
  assert.deepEqual(checkAll(scenes.slice(0, 15), 32, 48, (t, i) => gaussian(blur3(t), 0.1, i)).wrong, []);
});

test("nothing is found in an empty clip; a caption with other attributes does not match", () => {
  const empty = renderClip(
    {
      background: { kind: "plain", tone: "gray" },
      objects: [{ shape: "circle", colour: "red", size: 0.3, x: 5, y: 5, motion: "still", speed: 0 }],
    },
    { height: 32, width: 48, frames: 4, fps: 8 },
  );
  assert.deepEqual(detectObjects(empty), []);
  const s = sampleScenes(8, 1, { twoObjects: 0 })[0]!;
  const found = detectObjects(renderClip(s, { height: 32, width: 48, frames: 16, fps: 8 }));
  const o = s.objects[0]!;
  const otherShape = SHAPES.find((x) => x !== o.shape)!;
  const m = matchCaption(found, parseCaption(`a ${o.colour} ${otherShape}`));
  assert.deepEqual(m, { objects: [{ colour: true, shape: false, motion: true }], ok: false });
});

test("motion from a centroid track: slope, still threshold, speed class", () => {
  const track = (vx: number, vy: number) =>
    Array.from({ length: 16 }, (_, f) => ({ x: 0.5 + (vx * f) / 8, y: 0.5 + (vy * f) / 8 }));
  assert.equal(motionOf(track(0.01, 0.02), 8).motion, "still");
  const r = motionOf(track(0.3, 0.01), 8);
  assert.equal(r.motion, "right");
  assert.equal(r.speed, "fast");
  assert.ok(Math.abs(r.velocity.x - 0.3) < 1e-9);
  assert.equal(motionOf(track(0, -0.15), 8).motion, "up");
  assert.equal(motionOf(track(0, -0.15), 8).speed, "slow");
  const gaps = track(-0.2, 0).map((p, f) => (f % 3 === 0 ? null : p));
  assert.equal(motionOf(gaps, 8).motion, "left");
});
