import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import * as ort from "onnxruntime-node";
import { attr, GraphBuilder } from "./graph.ts";
import { serializeModel } from "./serialize.ts";

function convGraph(seed: number) {
  const g = new GraphBuilder({ name: "conv", seed });
  const x = g.input("x", "float32", ["N", 2, "H", "W"]);
  const w = g.scope("conv", () => g.param("weight", [3, 2, 3, 3], { kind: "uniform", bound: 0.5 }));
  const y = g.op("Conv", [x, w], { pads: attr.ints([1, 1, 1, 1]), kernel_shape: attr.ints([3, 3]) });
  g.output(g.op("Mul", [y, g.constF([2], [])]), "y", "float32", ["N", 3, "H", "W"]);
  return g;
}

test("a built graph runs in onnxruntime and matches a direct convolution", async () => {
  const g = convGraph(1);
  assert.equal(g.parameterCount, 54);
  const { onnx } = serializeModel(g.toModel());
  const session = await ort.InferenceSession.create(onnx);
  const x = Float32Array.from({ length: 2 * 4 * 5 }, (_, i) => Math.sin(i));
  const out = await session.run({ x: new ort.Tensor("float32", x, [1, 2, 4, 5]) });
  const y = out.y!.data as Float32Array;
  assert.deepEqual(out.y!.dims, [1, 3, 4, 5]);
  // Recompute output channel 1 at (2, 3) by hand from the serialized weights.
  const model = g.toModel();
  const wt = model.graph!.initializer.find((t) => t.name === "conv.weight")!;
  const wv = new Float32Array(wt.rawData.slice().buffer);
  let acc = 0;
  for (let c = 0; c < 2; c++)
    for (let dy = -1; dy <= 1; dy++)
      for (let dx = -1; dx <= 1; dx++) {
        const yy = 2 + dy;
        const xx = 3 + dx;
        if (yy < 0 || yy >= 4 || xx < 0 || xx >= 5) continue;
        acc += x[c * 20 + yy * 5 + xx]! * wv[((1 * 2 + c) * 3 + (dy + 1)) * 3 + (dx + 1)]!;
      }
  assert.ok(Math.abs(y[20 + 2 * 5 + 3]! - 2 * acc) < 1e-5);
});

test("building is deterministic and the seed changes the weights", () => {
  const a = serializeModel(convGraph(1).toModel()).onnx;
  const b = serializeModel(convGraph(1).toModel()).onnx;
  const c = serializeModel(convGraph(2).toModel()).onnx;
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

test("external data files load by path and give the same outputs", async () => {
  const dir = mkdtempSync(join(tmpdir(), "lavie-ext-"));
  const inline = serializeModel(convGraph(3).toModel());
  const ext = serializeModel(convGraph(3).toModel(), {
    externalDataFile: "conv.onnx.data",
    externalMinBytes: 16,
  });
  assert.ok(ext.dataBytes >= 54 * 4);
  assert.ok(ext.onnx.length < inline.onnx.length);
  writeFileSync(join(dir, "conv.onnx"), ext.onnx);
  writeFileSync(join(dir, "conv.onnx.data"), Buffer.concat(ext.data));
  const s1 = await ort.InferenceSession.create(inline.onnx);
  const s2 = await ort.InferenceSession.create(join(dir, "conv.onnx"));
  const x = new ort.Tensor(
    "float32",
    Float32Array.from({ length: 2 * 3 * 3 }, (_, i) => i / 7),
    [1, 2, 3, 3],
  );
  const y1 = (await s1.run({ x })).y!.data;
  const y2 = (await s2.run({ x })).y!.data;
  assert.deepEqual(y1, y2);
});

test("count-only graphs count parameters without weights", () => {
  const g = new GraphBuilder({ name: "big", seed: 0, materialize: false });
  g.scope("w", () => g.param("weight", [4096, 4096, 16], { kind: "normal", std: 1 }));
  assert.equal(g.parameterCount, 4096 * 4096 * 16);
  assert.throws(() => g.toModel(), /without weights/);
});

test("float16 weight storage: FLOAT16 initializers cast to float32 compute with the rounded weights", async () => {
  const weights = {
    take: (_: string, shape: readonly number[]) =>
      Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_v, i) => 0.1 + i / 3),
  };
  const build = (weightDtype: "float32" | "float16") => {
    const g = new GraphBuilder({ name: "lin", seed: 0, weights, weightDtype });
    const x = g.input("x", "float32", ["N", 3]);
    const w = g.param("w", [3, 2], { kind: "zeros" });
    g.output(g.op("MatMul", [x, w]), "y", "float32", ["N", 2]);
    return g.toModel();
  };
  const half = build("float16");
  const init = half.graph!.initializer.find((t) => t.name === "w")!;
  assert.equal(init.dataType, 10, "FLOAT16");
  assert.equal(init.rawData.length, 6 * 2);
  const run = async (m: ReturnType<typeof build>) => {
    const s = await ort.InferenceSession.create(serializeModel(m).onnx);
    const out = await s.run({ x: new ort.Tensor("float32", Float32Array.of(1, 2, 3), [1, 3]) });
    return out.y!.data as Float32Array;
  };
  const [y16, y32] = [await run(half), await run(build("float32"))];
  // Expected: x @ round_to_f16(w). Float16 has 11 significant bits, so each weight moves by < 2^-11 relative.
  const w = weights.take("w", [3, 2]);
  const f16 = (v: number) => {
    const e = Math.floor(Math.log2(Math.abs(v)));
    const q = 2 ** (e - 10);
    return Math.round(v / q) * q;
  };
  for (let j = 0; j < 2; j++) {
    const want = [1, 2, 3].reduce((a, xv, i) => a + xv * f16(w[i * 2 + j]!), 0);
    assert.ok(Math.abs(y16[j]! - want) < 1e-5, `${y16[j]} vs ${want}`);
  }
  assert.notDeepEqual(y16, y32, "the rounding is visible");
});
