import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LavieError } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import { sliceBox, tensor } from "../tensor.ts";
import type { AxisSplit, Window } from "./index.ts";
import { Blender, boxes, featherWeights, planTiles, scalePlan, stitch, windows } from "./index.ts";

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const randInt = (rand: () => number, lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));

function randomTensor(shape: readonly number[], seed: number): Tensor {
  const rand = rng(seed);
  const t = tensor(shape);
  for (let i = 0; i < t.data.length; i++) t.data[i] = (rand() - 0.5) * 10 ** randInt(rand, -3, 3);
  return t;
}

const starts = (ws: readonly Window[]) => ws.map((w) => w.start);
const fieldIs = (field: string) => (e: unknown) =>
  e instanceof LavieError && e.code === "invalid_argument" && e.field === field;

function maxRelErr(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!) / Math.max(1, Math.abs(b[i]!)));
  return m;
}

function blendSlices(x: Tensor, splits: AxisSplit[]): { out: Tensor; wsum: Tensor } {
  const plan = planTiles(x.shape, splits);
  const b = new Blender(x.shape);
  for (const tile of plan.tiles) b.addTile(tile, sliceBox(x, tile.box));
  const wsum = b.weightSums();
  return { out: b.result(), wsum };
}

describe("windows", () => {
  it("plans the documented examples", () => {
    assert.deepEqual(windows(5, 8), [{ start: 0, size: 5 }]);
    assert.deepEqual(windows(8, 8, 4), [{ start: 0, size: 8 }]);
    assert.deepEqual(starts(windows(61, 8)), [0, 8, 16, 24, 32, 40, 48, 53]);
    const shrunk = windows(61, 8, 0, 1, { tail: "shrink" });
    assert.deepEqual(starts(shrunk), [0, 8, 16, 24, 32, 40, 48, 56]);
    assert.equal(shrunk.at(-1)!.size, 5);
    assert.deepEqual(starts(windows(61, 16, 4)), [0, 12, 24, 36, 45]);
    assert.deepEqual(starts(windows(40, 16, 8, 8)), [0, 8, 16, 24]);
    assert.deepEqual(starts(windows(64, 16, 8, 8)), [0, 8, 16, 24, 32, 40, 48]);
  });

  it("covers the axis with aligned windows of the requested size and at least the overlap", () => {
    const rand = rng(3);
    for (let n = 0; n < 2000; n++) {
      const m = randInt(rand, 1, 4);
      const size = m * randInt(rand, 1, 8);
      const overlap = m * randInt(rand, 0, size / m - 1);
      const length = m * randInt(rand, 1, 30);
      const tail = rand() < 0.5 ? "shift" : "shrink";
      const ws = windows(length, size, overlap, m, { tail });
      assert.equal(ws[0]!.start, 0);
      assert.equal(ws.at(-1)!.start + ws.at(-1)!.size, length);
      ws.forEach((w, i) => {
        assert.equal(w.start % m, 0);
        assert.equal(w.size % m, 0);
        if (length >= size && (tail === "shift" || i < ws.length - 1)) assert.equal(w.size, size);
        const prev = ws[i - 1];
        if (prev) {
          assert.ok(w.start > prev.start, "strictly increasing starts");
          assert.ok(prev.start + prev.size - w.start >= overlap, "overlap at least O, no gaps");
        }
      });
      if (tail === "shrink" && overlap === 0) {
        assert.equal(
          ws.reduce((s, w) => s + w.size, 0),
          length,
        );
      }
    }
  });

  it("rejects bad parameters, naming them", () => {
    assert.throws(() => windows(61, 0), fieldIs("tiling.size"));
    assert.throws(() => windows(0, 8), fieldIs("tiling.length"));
    assert.throws(() => windows(61, 8, 8), fieldIs("tiling.overlap"));
    assert.throws(() => windows(61, 8, -1), fieldIs("tiling.overlap"));
    assert.throws(() => windows(61, 8.5), fieldIs("tiling.size"));
    assert.throws(() => windows(64, 16, 4, 8), fieldIs("tiling.overlap"));
    assert.throws(() => windows(60, 16, 8, 8), fieldIs("tiling.length"));
    assert.throws(() => windows(64, 12, 8, 8), fieldIs("tiling.size"));
    assert.throws(() => windows(64, 16, 0, 0), fieldIs("tiling.multipleOf"));
    assert.throws(() => windows(61, 8, 9, 1, { field: "vsr.chunk" }), /vsr\.chunk\.overlap: must be smaller/);
    const split = { axis: 3, size: 16, overlap: 16, name: "height" };
    assert.throws(() => planTiles([1, 4, 8, 40, 64], [split]), fieldIs("tiling.height.overlap"));
    assert.throws(() => planTiles([1, 4, 8, 40, 64], [{ axis: 5, size: 8 }]), fieldIs("tiling.axis5.axis"));
    const dup = [
      { axis: 3, size: 8 },
      { axis: 3, size: 16 },
    ];
    assert.throws(() => planTiles([1, 4, 8, 40, 64], dup), /split twice/);
  });
});

describe("tile plans", () => {
  it("is the row-major product of per-axis windows, unsplit axes whole", () => {
    const plan = planTiles(
      [1, 4, 61, 40, 64],
      [
        { axis: 2, size: 8, tail: "shrink" },
        { axis: 3, size: 16, overlap: 8, multipleOf: 8 },
        { axis: 4, size: 32, overlap: 16, multipleOf: 8 },
      ],
    );
    assert.equal(plan.tiles.length, 8 * 4 * 3);
    assert.deepEqual(plan.tiles[0]!.box, { start: [0, 0, 0, 0, 0], size: [1, 4, 8, 16, 32] });
    assert.deepEqual(plan.tiles[1]!.box, { start: [0, 0, 0, 0, 16], size: [1, 4, 8, 16, 32] });
    assert.deepEqual(plan.tiles.at(-1)!.box, { start: [0, 0, 56, 24, 32], size: [1, 4, 5, 16, 32] });
    assert.deepEqual(plan.tiles.at(-1)!.grid, [7, 3, 2]);
    assert.equal(plan.tiles[0]!.weights[0], undefined);
    assert.deepEqual(boxes([2, 6], []), [{ start: [0, 0], size: [2, 6] }]);
  });

  it("scales exactly from latent to pixel resolution", () => {
    const lat = planTiles([1, 4, 16, 40, 64], [{ axis: 3, size: 16, overlap: 8, multipleOf: 8 }]);
    const px = scalePlan(lat, [1, 3, 16, 320, 512], [1, 1, 1, 8, 8]);
    const direct = boxes([1, 3, 16, 320, 512], [{ axis: 3, size: 128, overlap: 64, multipleOf: 64 }]);
    assert.deepEqual(
      px.tiles.map((t) => t.box),
      direct,
    );
    assert.throws(() => scalePlan(lat, [1, 3, 16, 300, 512], [1, 1, 1, 8, 8]), fieldIs("tiling.shape"));
  });
});

describe("feather weights", () => {
  it("ramps linearly across overlaps, is 1 elsewhere and never zero", () => {
    const ws = windows(12, 6, 2);
    assert.deepEqual(starts(ws), [0, 4, 6]);
    assert.deepEqual([...featherWeights(ws, 0)], [1, 1, 1, 1, 2 / 3, 1 / 3].map(Math.fround));
    assert.deepEqual([...featherWeights(ws, 1)], [1 / 3, 2 / 3, 4 / 5, 3 / 5, 2 / 5, 1 / 5].map(Math.fround));
    assert.deepEqual([...featherWeights(ws, 2)], [1 / 5, 2 / 5, 3 / 5, 4 / 5, 1, 1].map(Math.fround));
    const rand = rng(9);
    for (let n = 0; n < 300; n++) {
      const size = randInt(rand, 1, 12);
      const w = windows(randInt(rand, 1, 50), size, randInt(rand, 0, size - 1));
      const all = w.map((_, i) => featherWeights(w, i));
      for (const a of all) for (const x of a) assert.ok(x > 0 && x <= 1);
      assert.equal(all[0]![0], 1);
      assert.equal(all.at(-1)!.at(-1), 1);
    }
  });
});

describe("Blender and stitch", () => {
  it("without overlap is plain stitching, bit-identical", () => {
    const x = randomTensor([1, 4, 61, 24, 40], 1);
    const { out, wsum } = blendSlices(x, [
      { axis: 2, size: 8, tail: "shrink" },
      { axis: 3, size: 8, multipleOf: 8 },
      { axis: 4, size: 16, tail: "shrink", multipleOf: 8 },
    ]);
    assert.deepEqual(out.data, x.data);
    assert.ok(wsum.data.every((w) => w === 1));
  });

  it("with overlap reproduces the tensor, and weights sum to 1 where at most two windows meet", () => {
    const x = randomTensor([1, 2, 61, 40, 64], 2);
    const { out, wsum } = blendSlices(x, [
      { axis: 2, size: 16, overlap: 4 },
      { axis: 3, size: 16, overlap: 8, multipleOf: 8 },
      { axis: 4, size: 24, overlap: 8, multipleOf: 8 },
    ]);
    assert.ok(maxRelErr(out.data, x.data) < 1e-6);
    for (const w of wsum.data) assert.ok(Math.abs(w - 1) < 1e-6, `weight sum ${w}`);
  });

  it("reproduces the tensor for random plans, including triple overlaps", () => {
    const rand = rng(5);
    for (let n = 0; n < 40; n++) {
      const shape = [1, 2, randInt(rand, 1, 20), randInt(rand, 1, 20)];
      const splits = [2, 3].map((axis) => {
        const size = randInt(rand, 1, 10);
        return {
          axis,
          size,
          overlap: randInt(rand, 0, size - 1),
          tail: rand() < 0.5 ? "shift" : "shrink",
        } as const;
      });
      const x = randomTensor(shape, n);
      const { out, wsum } = blendSlices(x, splits);
      assert.ok(maxRelErr(out.data, x.data) < 1e-6, JSON.stringify(splits));
      assert.ok(wsum.data.every((w) => w > 0));
    }
  });

  it("reports misuse", () => {
    const b = new Blender([4, 4]);
    assert.throws(() => b.add(tensor([2, 2]), [3, 0]), fieldIs("tile"));
    assert.throws(() => b.add(tensor([2, 2]), [0, 0], [new Float32Array(3)]), fieldIs("weights"));
    b.add(tensor([2, 4]), [0, 0]);
    assert.throws(() => b.result(), /not covered/);
  });

  it("stitches non-overlapping pieces in any order and rejects overlaps and gaps", () => {
    const x = randomTensor([2, 61, 24], 3);
    const bs = boxes(x.shape, [
      { axis: 1, size: 8, tail: "shrink" },
      { axis: 2, size: 16, tail: "shrink" },
    ]);
    const pieces = bs.map((box) => ({ data: sliceBox(x, box), start: box.start })).reverse();
    assert.deepEqual(stitch(x.shape, pieces).data, x.data);
    assert.throws(() => stitch(x.shape, pieces.slice(1)), fieldIs("pieces"));
    const overlapping = boxes(x.shape, [{ axis: 1, size: 8 }]).map((box) => ({
      data: sliceBox(x, box),
      start: box.start,
    }));
    assert.throws(() => stitch(x.shape, overlapping), fieldIs("piece"));
  });
});
