import assert from "node:assert/strict";
import { test } from "node:test";
import { coverage, shapeArea } from "./geometry.ts";
import { BASE_CLIP, boxDownsample, INTERP_CLIP, renderClip, renderFrame } from "./render.ts";
import { sampleScenes } from "./sample.ts";
import { COLOUR_RGB, type Scene, SHAPES, TONE_RGB } from "./scene.ts";

test("coverage is exact: it sums to the shape's area and splits additively into sub-pixels", () => {
  for (const shape of SHAPES) {
    for (const [cx, cy, s] of [
      [10.3, 7.7, 5.3],
      [20, 20, 13.7],
      [3.1, 4.9, 2.2],
    ] as const) {
      let sum = 0;
      for (let i = -2; i < 40; i++) {
        for (let j = -2; j < 40; j++) {
          const a = coverage(shape, cx, cy, s, j, i, j + 1, i + 1);
          assert.ok(a >= 0 && a <= 1 + 1e-12, `${shape} coverage ${a}`);
          sum += a;
          let sub = 0;
          for (let u = 0; u < 3; u++)
            for (let v = 0; v < 3; v++)
              sub += coverage(shape, cx, cy, s, j + v / 3, i + u / 3, j + (v + 1) / 3, i + (u + 1) / 3);
          assert.ok(Math.abs(sub - a) < 1e-12, `${shape} pixel (${i}, ${j}): ${sub} vs ${a}`);
        }
      }
      assert.ok(Math.abs(sum - shapeArea(shape, s)) < 1e-10, `${shape} area ${sum}`);
    }
  }
});

test("disk coverage agrees with dense point sampling", () => {
  const n = 200;
  for (const [x0, y0] of [
    [1, 0],
    [2, -3],
    [-1.5, 2.2],
  ] as const) {
    let inside = 0;
    for (let a = 0; a < n; a++)
      for (let b = 0; b < n; b++) {
        const x = x0 + (b + 0.5) / n;
        const y = y0 + (a + 0.5) / n;
        if (x * x + y * y < 9) inside++;
      }
    const exact = coverage("circle", 0, 0, 6, x0, y0, x0 + 1, y0 + 1);
    assert.ok(
      Math.abs(exact - inside / (n * n)) < 2e-3,
      `box at (${x0}, ${y0}): ${exact} vs ${inside / n / n}`,
    );
  }
});

const plain = sampleScenes(11, 40, { split: "any", twoObjects: 0.5 }).filter(
  (s) => s.background.kind === "plain",
);
const gradient = sampleScenes(12, 40, { split: "any" }).filter((s) => s.background.kind === "gradient");

test("frame 4k of the 61-frame clip at 32 fps is base frame k, bit for bit", () => {
  for (const scene of [...plain.slice(0, 3), ...gradient.slice(0, 2)]) {
    const base = renderClip(scene, { height: 32, width: 48, ...BASE_CLIP });
    const interp = renderClip(scene, { height: 32, width: 48, ...INTERP_CLIP });
    assert.deepEqual(base.shape, [1, 3, 16, 32, 48]);
    assert.deepEqual(interp.shape, [1, 3, 61, 32, 48]);
    const hw = 32 * 48;
    for (let c = 0; c < 3; c++)
      for (let k = 0; k < 16; k++) {
        const a = base.data.subarray((c * 16 + k) * hw, (c * 16 + k + 1) * hw);
        const b = interp.data.subarray((c * 61 + 4 * k) * hw, (c * 61 + 4 * k + 1) * hw);
        assert.deepEqual(a, b, `channel ${c} frame ${k}`);
      }
    // In-between frames differ when something moves.
    if (scene.objects.some((o) => o.motion !== "still")) {
      const f1 = interp.data.subarray(hw, 2 * hw);
      const f0 = interp.data.subarray(0, hw);
      assert.notDeepEqual(f0, f1);
    }
  }
});

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

test("a 4x render box-filtered down by 4 is the 1x render (exactly on plain backgrounds)", () => {
  for (const scene of plain.slice(0, 4)) {
    const lo = renderClip(scene, { height: 32, width: 48, frames: 4, fps: 2 });
    const hi = renderClip(scene, { height: 128, width: 192, frames: 4, fps: 2 });
    const down = boxDownsample(hi, 4);
    assert.deepEqual(down.shape, lo.shape);
    assert.ok(maxDiff(down.data, lo.data) < 1e-5, `max diff ${maxDiff(down.data, lo.data)}`);
  }
  // Gradients: an object pixel's background is taken at the pixel centre, off by < |to - from| / (2H).
  for (const scene of gradient.slice(0, 3)) {
    const lo = renderClip(scene, { height: 32, width: 48, frames: 2, fps: 1 });
    const down = boxDownsample(renderClip(scene, { height: 128, width: 192, frames: 2, fps: 1 }), 4);
    const d = maxDiff(down.data, lo.data);
    assert.ok(d < 2 / 32, `gradient max diff ${d}`);
  }
});

test("pixels show the background tones and the object colour in [-1, 1], layout [1, 3, F, H, W]", () => {
  const scene: Scene = {
    background: { kind: "plain", tone: "gray" },
    objects: [{ shape: "square", colour: "red", size: 0.5, x: 0.25, y: 0.5, motion: "right", speed: 0.25 }],
  };
  const H = 32;
  const W = 48;
  const clip = renderClip(scene, { height: H, width: W, frames: 3, fps: 1 });
  const at = (c: number, f: number, i: number, j: number) => clip.data[((c * 3 + f) * H + i) * W + j]!;
  const red = COLOUR_RGB.red.map((v) => v * 2 - 1);
  const gray = TONE_RGB.gray.map((v) => v * 2 - 1);
  for (let c = 0; c < 3; c++) {
    // Square of 16 px at x = 0.25 W = 12 px at t = 0: covers columns 4..19, rows 8..23.
    assert.ok(Math.abs(at(c, 0, 16, 12) - red[c]!) < 1e-6);
    assert.ok(Math.abs(at(c, 0, 16, 30) - gray[c]!) < 1e-6);
    // At t = 2 s it has moved by 0.5 W = 24 px: centre column 36.
    assert.ok(Math.abs(at(c, 2, 16, 36) - red[c]!) < 1e-6);
    assert.ok(Math.abs(at(c, 2, 16, 12) - gray[c]!) < 1e-6);
  }
  // A half-covered column: the square's left edge at x = 12 - 8 = 4 exactly, so column 3 is background.
  assert.ok(Math.abs(at(0, 0, 16, 3) - gray[0]!) < 1e-6);
  const frame = renderFrame(scene, 0, H, W);
  assert.deepEqual(frame.shape, [3, H, W]);
  assert.deepEqual(frame.data.subarray(0, H * W), clip.data.subarray(0, H * W));
  for (const v of clip.data) assert.ok(v >= -1 && v <= 1);
});

test("gradients run from `from` to `to`, top to bottom (vertical) or left to right", () => {
  const obj = {
    shape: "circle",
    colour: "red",
    size: 0.1,
    x: 0.9,
    y: 0.9,
    motion: "still",
    speed: 0,
  } as const;
  const v = renderFrame(
    { background: { kind: "gradient", direction: "vertical", from: "black", to: "white" }, objects: [obj] },
    0,
    8,
    12,
  );
  assert.ok(Math.abs(v.data[0]! - (2 * (0.5 / 8) - 1)) < 1e-6); // top row: 1/16 of the way
  assert.ok(Math.abs(v.data[7 * 12]! - (2 * (7.5 / 8) - 1)) < 1e-6);
  assert.equal(v.data[0], v.data[5]); // constant along a row
  const h = renderFrame(
    { background: { kind: "gradient", direction: "horizontal", from: "white", to: "gray" }, objects: [obj] },
    0,
    8,
    12,
  );
  assert.ok(Math.abs(h.data[0]! - (2 * (1 - 0.5 * (0.5 / 12)) - 1)) < 1e-6);
  assert.equal(h.data[0], h.data[12]); // constant along a column
});
