import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LavieError } from "../errors.ts";
import { MAX_JOB_SEED } from "../seed.ts";
import type { Box } from "../tensor.ts";
import { numel, sliceBox, tensor, writeBox } from "../tensor.ts";
import { noiseBox, noiseFull, philox4x32, stageStepHash } from "./index.ts";

const hex = (a: Uint32Array): string => [...a].map((x) => x.toString(16).padStart(8, "0")).join(" ");

/** Straightforward BigInt Philox4x32-10, used as an independent reference. */
function philoxRef(c: bigint[], k: bigint[]): bigint[] {
  const M = 0xffffffffn;
  let [c0, c1, c2, c3] = c as [bigint, bigint, bigint, bigint];
  let [k0, k1] = k as [bigint, bigint];
  for (let r = 0; r < 10; r++) {
    const p0 = 0xd2511f53n * c0;
    const p1 = 0xcd9e8d57n * c2;
    [c0, c1, c2, c3] = [((p1 >> 32n) ^ c1 ^ k0) & M, p1 & M, ((p0 >> 32n) ^ c3 ^ k1) & M, p0 & M];
    k0 = (k0 + 0x9e3779b9n) & M;
    k1 = (k1 + 0xbb67ae85n) & M;
  }
  return [c0, c1, c2, c3];
}

/** Small deterministic PRNG for test cases (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomBox(shape: readonly number[], rand: () => number): Box {
  const start: number[] = [];
  const size: number[] = [];
  for (const n of shape) {
    const s = Math.floor(rand() * n);
    start.push(s);
    size.push(1 + Math.floor(rand() * (n - s)));
  }
  return { start, size };
}

/** Every non-empty box of a small shape. */
function allBoxes(shape: readonly number[]): Box[] {
  let boxes: Box[] = [{ start: [], size: [] }];
  for (const n of shape) {
    const next: Box[] = [];
    for (const b of boxes) {
      for (let s = 0; s < n; s++) {
        for (let z = 1; s + z <= n; z++) next.push({ start: [...b.start, s], size: [...b.size, z] });
      }
    }
    boxes = next;
  }
  return boxes;
}

const key = { seed: 42, stage: "base", step: 0 };

describe("philox4x32-10", () => {
  it("matches the Random123 known-answer vectors", () => {
    assert.equal(hex(philox4x32([0, 0, 0, 0], [0, 0])), "6627e8d5 e169c58d bc57ac4c 9b00dbd8");
    const f = 0xffffffff;
    assert.equal(hex(philox4x32([f, f, f, f], [f, f])), "408f276d 41c83b0e a20bc7c6 6d5451fd");
    assert.equal(
      hex(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0])),
      "d16cfe09 94fdcceb 5001e420 24126ea1",
    );
  });

  it("matches a BigInt reference on random counters and keys", () => {
    const rand = rng(7);
    const word = () => Math.floor(rand() * 4294967296);
    for (let n = 0; n < 300; n++) {
      const c = [word(), word(), word(), word()] as [number, number, number, number];
      const k = [word(), word()] as [number, number];
      const got = [...philox4x32(c, k)].map(BigInt);
      assert.deepEqual(got, philoxRef(c.map(BigInt), k.map(BigInt)));
    }
  });
});

describe("keyed noise", () => {
  it("reproduces the documented derivation (values from an independent Python implementation)", () => {
    assert.equal(stageStepHash("base", 0), 0xa13a493d7359bee8n);
    assert.equal(stageStepHash("", 0), 0xe604823a249029bfn);
    assert.equal(stageStepHash("vsr", 49), 0x3b687b8b90073e4dn);
    const expected = [
      0.4486679136753082, -0.7780795097351074, 0.2955835461616516, 1.3198280334472656, 0.45395585894584656,
      0.28194573521614075,
    ];
    assert.deepEqual([...noiseFull(key, [6]).data], expected);
    // Flat indices beyond 2^36 exercise the high counter word; the largest job seed sets key bits
    // above 32 (values from python/lavie_ref/noise.py keyed_normals(2**53 - 1, "interp", 7, 2**36 + 1, 3)).
    const big = { seed: MAX_JOB_SEED, stage: "interp", step: 7 };
    const at = 2 ** 36 + 1;
    const got = noiseBox(big, [2 ** 36, 4], { start: [2 ** 34, 1], size: [1, 3] });
    assert.equal(at, 2 ** 34 * 4 + 1);
    assert.deepEqual([...got.data], [-0.4152913987636566, 0.08877749741077423, 0.09385384619235992]);
  });

  it("every box equals the matching slice of the full tensor (all boxes of small shapes)", () => {
    for (const shape of [[7], [3, 5], [2, 3, 5]]) {
      const full = noiseFull(key, shape);
      for (const box of allBoxes(shape)) {
        assert.deepEqual(noiseBox(key, shape, box).data, sliceBox(full, box).data, JSON.stringify(box));
      }
    }
  });

  it("every box equals the matching slice of the full tensor (random boxes of larger shapes)", () => {
    const rand = rng(1);
    for (const shape of [
      [1, 4, 9, 6, 10],
      [2, 3, 5, 7, 3],
      [1, 4, 16, 5, 13],
    ]) {
      const k = { seed: 123456789, stage: "vsr", step: 3 };
      const full = noiseFull(k, shape);
      for (let n = 0; n < 200; n++) {
        const box = randomBox(shape, rand);
        assert.deepEqual(noiseBox(k, shape, box).data, sliceBox(full, box).data, JSON.stringify(box));
      }
    }
  });

  it("chunks drawn in any order reassemble the full tensor exactly", () => {
    const shape = [1, 4, 61, 8, 8];
    const full = noiseFull(key, shape);
    const starts = [0, 8, 16, 24, 32, 40, 48, 56].reverse();
    const out = tensor(shape);
    for (const f of starts) {
      const size = [1, 4, Math.min(8, 61 - f), 8, 8];
      writeBox(out, noiseBox(key, shape, { start: [0, 0, f, 0, 0], size }), [0, 0, f, 0, 0]);
    }
    assert.deepEqual(out.data, full.data);
  });

  it("is deterministic and depends on seed, stage and step", () => {
    const shape = [4, 64];
    const a = noiseFull(key, shape).data;
    assert.deepEqual(noiseFull({ ...key }, shape).data, a);
    const variants = [
      { ...key, seed: 43 },
      { ...key, seed: 42 + 2 ** 32 },
      { ...key, stage: "interp" },
      { ...key, stage: "base " },
      { ...key, step: 1 },
    ];
    for (const v of variants) {
      const b = noiseFull(v, shape).data;
      let same = 0;
      for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++;
      assert.equal(same, 0, JSON.stringify(v));
    }
  });

  it("is standard normal: mean ~ 0, variance ~ 1 over 1e5 samples, no non-finite values", () => {
    const d = noiseFull({ seed: 2024, stage: "base", step: 10 }, [100_000]).data;
    let s = 0;
    let s2 = 0;
    for (const x of d) {
      assert.ok(Number.isFinite(x));
      s += x;
      s2 += x * x;
    }
    const mean = s / d.length;
    const variance = s2 / d.length - mean * mean;
    assert.ok(Math.abs(mean) < 0.015, `mean ${mean}`);
    assert.ok(Math.abs(variance - 1) < 0.02, `variance ${variance}`);
  });

  it("validates seed, step and boxes, naming the field", () => {
    const bad = (k: { seed: number; stage: string; step: number }, field: string) =>
      assert.throws(
        () => noiseFull(k, [4]),
        (e: unknown) => e instanceof LavieError && e.code === "invalid_argument" && e.field === field,
      );
    bad({ ...key, seed: -1 }, "seed");
    bad({ ...key, seed: 1.5 }, "seed");
    bad({ ...key, seed: 2 ** 64 }, "seed");
    // The job seed's one range (core/seed.ts), with the message every entry point gives.
    assert.throws(() => noiseFull({ ...key, seed: 2 ** 53 }, [4]), {
      message: "seed: must be an integer in 0..9007199254740991, got 9007199254740992",
    });
    bad({ ...key, step: -1 }, "step");
    bad({ ...key, step: 0.5 }, "step");
    assert.doesNotThrow(() => noiseFull({ ...key, seed: MAX_JOB_SEED }, [4]));
    assert.throws(() => noiseBox(key, [4, 4], { start: [0, 2], size: [1, 3] }), /box/);
    assert.throws(() => noiseBox(key, [4, 4], { start: [0], size: [1] }), /rank/);
    assert.equal(numel(noiseBox(key, [4, 4], { start: [1, 1], size: [0, 2] }).shape), 0);
  });
});
