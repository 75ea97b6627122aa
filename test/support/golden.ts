/**
 * Golden-vector cases (test/golden/<generator>/...): each case directory holds case.json,
 * inputs.safetensors and outputs.safetensors, written by `python -m lavie_ref.golden` from PyTorch.
 * Tests build our network, run it with onnxruntime-node and compare.
 *
 *   for (const dir of await listCases("test/golden/unets")) {
 *     const c = await loadCase(dir);
 *     const out = await runGraph(graph, c.inputs);
 *     assert.ok(maxAbsDiff(out.out_sample!.data, c.outputs.get("out_sample")!.data) <= 1e-4);
 *   }
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join, relative } from "node:path";
import * as ort from "onnxruntime-node";
import type { TensorRecord } from "../../models/checkpoint/dtypes.ts";
import { readSafetensors } from "../../models/checkpoint/safetensors.ts";
import type { GraphBuilder } from "../../models/onnx/graph.ts";
import { serializeModel } from "../../models/onnx/serialize.ts";

export const GOLDEN_ROOT = new URL("../golden/", import.meta.url).pathname;

export interface GoldenCase {
  dir: string;
  /** Path relative to test/golden, for test names. */
  name: string;
  meta: Record<string, unknown>;
  inputs: Map<string, ort.Tensor>;
  outputs: Map<string, ort.Tensor>;
}

/** Case directories (those holding case.json) below `root`, sorted; [] when root does not exist. */
export async function listCases(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    if (entries.some((e) => e.isFile() && e.name === "case.json")) out.push(dir);
    for (const e of entries) if (e.isDirectory()) await walk(join(dir, e.name));
  };
  if (await stat(root).catch(() => null)) await walk(root);
  return out.sort();
}

async function toOrt(t: TensorRecord): Promise<ort.Tensor> {
  const shape = [...t.shape];
  switch (t.dtype) {
    case "I64":
      return new ort.Tensor("int64", (await t.read()) as BigInt64Array, shape);
    case "I32":
      return new ort.Tensor("int32", (await t.read()) as Int32Array, shape);
    default:
      return new ort.Tensor("float32", await t.readFloat32(), shape);
  }
}

async function tensorsOf(path: string): Promise<Map<string, ort.Tensor>> {
  const { tensors } = await readSafetensors(path);
  const out = new Map<string, ort.Tensor>();
  for (const [k, t] of tensors) out.set(k, await toOrt(t));
  return out;
}

export async function loadCase(dir: string): Promise<GoldenCase> {
  return {
    dir,
    name: relative(GOLDEN_ROOT, dir),
    meta: JSON.parse(await readFile(join(dir, "case.json"), "utf8")) as Record<string, unknown>,
    inputs: await tensorsOf(join(dir, "inputs.safetensors")),
    outputs: await tensorsOf(join(dir, "outputs.safetensors")),
  };
}

const SESSION: ort.InferenceSession.SessionOptions = {
  intraOpNumThreads: 2,
  interOpNumThreads: 1,
  extra: { session: { intra_op: { allow_spinning: "0" } } },
};

/** Runs a built graph once on CPU; feeds are matched to the graph's inputs by name. */
export async function runGraph(
  g: GraphBuilder,
  feeds: ReadonlyMap<string, ort.Tensor> | Record<string, ort.Tensor>,
): Promise<Record<string, ort.Tensor>> {
  const session = await ort.InferenceSession.create(serializeModel(g.toModel()).onnx, SESSION);
  try {
    const all = feeds instanceof Map ? Object.fromEntries(feeds) : (feeds as Record<string, ort.Tensor>);
    const used: Record<string, ort.Tensor> = {};
    for (const name of session.inputNames) {
      const t = all[name];
      if (!t)
        throw new Error(`golden feeds lack the graph input "${name}" (have: ${Object.keys(all).join(", ")})`);
      used[name] = t;
    }
    return await session.run(used);
  } finally {
    await session.release();
  }
}

/** Largest |a[i] - b[i]|; throws when the lengths differ. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (Number.isNaN(d)) return Number.NaN;
    if (d > m) m = d;
  }
  return m;
}

/** Largest |a[i]| (for relative bounds). */
export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}
