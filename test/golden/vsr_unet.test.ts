/**
 * LaVie's VSR UNet against PyTorch (python/lavie_ref/golden, whose reference matches the official
 * UNet3DVSRModel): each config directory of test/golden/vsr_unet holds the official-format config.json
 * and checkpoint.pt (torch.save({"ema": state_dict})). The config goes through our importer, the
 * checkpoint through the checkpoint reader with every key accounted for (the per-attention copies of
 * the shared rotary frequencies excepted), our graph is built on those weights and run with
 * onnxruntime-node (CPU, 2 threads); out_sample must equal PyTorch's within 1e-4. The case's latent and
 * low-res video are concatenated on channels into our 7-channel `sample`, as the official forward does.
 * frame_attention checks the temporal attention alone (heads wider than the 32 rotary dims).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import * as ort from "onnxruntime-node";
import { readSafetensors } from "../../models/checkpoint/index.ts";
import { importNetwork } from "../../models/import/lavie.ts";
import { type FloatTensor, StateDictWeights } from "../../models/import/weights.ts";
import { rotaryFreqs } from "../../models/nets/attention.ts";
import { vsrTemporalAttention } from "../../models/nets/vsr_transformer.ts";
import { GraphBuilder } from "../../models/onnx/graph.ts";
import { GOLDEN_ROOT, listCases, loadCase, maxAbs, maxAbsDiff, runGraph } from "../support/golden.ts";

const TOLERANCE = 1e-4;
const ROOT = join(GOLDEN_ROOT, "vsr_unet");

async function floatTensors(
  records: Iterable<[string, { shape: readonly number[]; readFloat32(): Promise<Float32Array> }]>,
): Promise<Map<string, FloatTensor>> {
  const out = new Map<string, FloatTensor>();
  for (const [key, r] of records) out.set(key, { shape: r.shape, data: await r.readFloat32() });
  return out;
}

/** One graph per config directory (its cases share the weights). */
const graphs = new Map<string, Promise<GraphBuilder>>();

/** The network exactly as `lavie models import` builds it from these files. */
async function importVsrUNet(dir: string): Promise<GraphBuilder> {
  const files = { config: join(dir, "config.json"), weights: join(dir, "checkpoint.pt") };
  return (await importNetwork("vsr_unet", files)).graph;
}

/** [B, 4, F, H, W] latent and [B, 3, F, H, W] low-res video -> [B, 7, F, H, W]. */
function concatChannels(latent: ort.Tensor, lowRes: ort.Tensor): ort.Tensor {
  const [b, cl, ...rest] = latent.dims as number[];
  const cr = lowRes.dims[1] as number;
  const plane = rest.reduce((a, d) => a * d, 1);
  const a = latent.data as Float32Array;
  const r = lowRes.data as Float32Array;
  const out = new Float32Array(b! * (cl! + cr) * plane);
  for (let i = 0; i < b!; i++) {
    out.set(a.subarray(i * cl! * plane, (i + 1) * cl! * plane), i * (cl! + cr) * plane);
    out.set(r.subarray(i * cr * plane, (i + 1) * cr * plane), (i * (cl! + cr) + cl!) * plane);
  }
  return new ort.Tensor("float32", out, [b!, cl! + cr, ...rest]);
}

function assertClose(
  t: test.TestContext,
  name: string,
  got: ort.Tensor | undefined,
  want: ort.Tensor | undefined,
) {
  assert.ok(got && want, "output present");
  assert.deepEqual(got.dims, want.dims, "shape");
  const d = maxAbsDiff(got.data as Float32Array, want.data as Float32Array);
  t.diagnostic(
    `${name}: max |ours - PyTorch| = ${d.toExponential(2)} (max |PyTorch| ${maxAbs(want.data as Float32Array).toFixed(2)})`,
  );
  assert.ok(d <= TOLERANCE, `${name}: max abs diff ${d} > ${TOLERANCE}`);
}

const cases = await listCases(ROOT);
const unetCases = cases.filter((d) => !d.endsWith("frame_attention"));

test("the vsr_unet golden set is present: two configs with several cases, and the temporal attention", () => {
  const names = cases.map((d) => d.slice(ROOT.length + 1));
  assert.ok(names.includes("frame_attention"), "frame_attention missing");
  const configs = new Set(unetCases.map((d) => d.slice(ROOT.length + 1).split("/")[0]));
  assert.ok(configs.size >= 2, `configs: ${[...configs].join(", ")}`);
  assert.ok(unetCases.length >= 2 * configs.size, "cases missing");
});

for (const dir of unetCases) {
  test(`golden ${dir.slice(GOLDEN_ROOT.length)}: our VSR UNet on the official checkpoint equals PyTorch`, async (t) => {
    const c = await loadCase(dir);
    const configDir = join(dir, "..");
    let g = graphs.get(configDir);
    if (!g) graphs.set(configDir, (g = importVsrUNet(configDir)));
    const latent = c.inputs.get("sample");
    const lowRes = c.inputs.get("low_res");
    assert.ok(latent && lowRes, "sample and low_res inputs");
    const feeds = new Map(c.inputs);
    feeds.set("sample", concatChannels(latent, lowRes));
    const out = await runGraph(await g, feeds);
    assertClose(t, c.name, out.out_sample, c.outputs.get("out_sample"));
  });
}

test("golden vsr_unet/frame_attention: the temporal attention (RoPE on 32 of 64 head channels, relative bias) equals PyTorch", async (t) => {
  const dir = join(ROOT, "frame_attention");
  const c = await loadCase(dir);
  const meta = c.meta as { channels: number; heads: number };
  const { tensors } = await readSafetensors(join(dir, "weights.safetensors"));
  const src = new StateDictWeights("frame_attention/weights.safetensors", await floatTensors(tensors), {
    rename: (k) => `attn.${k}`,
  });
  const g = new GraphBuilder({ name: "frame_attention", seed: 0, weights: src });
  const x = g.input("x", "float32", ["N", "F", meta.channels]);
  const freqs = rotaryFreqs(g, "attn.rotary_emb", 32);
  const y = vsrTemporalAttention(g, "attn", x, meta.channels, meta.heads, { freqs, ropeDim: 32, groups: 32 });
  g.output(y, "out", "float32", ["N", "F", meta.channels]);
  src.assertAllUsed();
  const out = await runGraph(g, c.inputs);
  assertClose(t, c.name, out.out, c.outputs.get("out"));
});
