/**
 * Text encoders and VAEs against transformers 4.28.1 / diffusers 0.16.0 (python/lavie_ref/golden/textvae.py):
 * each case's model folder is read as a published folder would be (config.json through our config
 * importers, the .bin through the checkpoint reader, every key accounted for), our graph is built on
 * those weights and run with onnxruntime-node, and its outputs must equal PyTorch's within 1e-4.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import * as ort from "onnxruntime-node";
import { readDiffusersFolder, type TensorRecord } from "../../models/checkpoint/index.ts";
import { readConfigJson } from "../../models/import/json_fields.ts";
import { importNetwork } from "../../models/import/lavie.ts";
import {
  checkPositionIds,
  POSITION_IDS_KEY,
  parseTextEncoderConfig,
  TEXT_ENCODER_IGNORE,
} from "../../models/import/text_config.ts";
import { parseVaeConfig, type VaeKind, vaeIgnore, vaeKeyRename } from "../../models/import/vae_config.ts";
import { type FloatTensor, StateDictWeights } from "../../models/import/weights.ts";
import { buildTextEncoder } from "../../models/nets/text_encoder.ts";
import { buildVaeDecoder, buildVaeEncoder, splitMoments } from "../../models/nets/vae.ts";
import type { GraphBuilder } from "../../models/onnx/graph.ts";
import { GOLDEN_ROOT, listCases, loadCase, maxAbs, maxAbsDiff, runGraph } from "../support/golden.ts";

const TOLERANCE = 1e-4;
const ROOT = join(GOLDEN_ROOT, "textvae");

interface Meta {
  graph: "text_encoder" | VaeKind;
  model: string;
}

async function floats(records: ReadonlyMap<string, TensorRecord>): Promise<Map<string, FloatTensor>> {
  const out = new Map<string, FloatTensor>();
  for (const [key, r] of records) out.set(key, { shape: r.shape, data: await r.readFloat32() });
  return out;
}

/** Our graph on the weights of a saved model folder, as an import of the published folder would build it. */
async function importGraph(
  modelDir: string,
  kind: Meta["graph"],
  renameKeys?: (key: string) => string,
): Promise<GraphBuilder> {
  const configPath = join(modelDir, "config.json");
  if (!renameKeys) {
    // Exactly as `lavie models import` builds the network from this folder.
    const id =
      kind === "text_encoder" ? "clip_text" : kind === "x4_vae_decoder" ? kind : (`sd_${kind}` as const);
    return (await importNetwork(id, { config: configPath, weights: modelDir })).graph;
  }
  const json = await readConfigJson(configPath);
  const records = await readDiffusersFolder(modelDir);
  const tensors = await floats(records);
  const file = join(modelDir, "(weights)");
  if (kind === "text_encoder") {
    const ids = records.get(POSITION_IDS_KEY);
    assert.ok(ids, "transformers 4.28.1 saves the position_ids buffer");
    checkPositionIds(file, await ids.read());
    const src = new StateDictWeights(file, tensors, { ignore: TEXT_ENCODER_IGNORE });
    const g = buildTextEncoder(parseTextEncoderConfig(json, configPath), { seed: 0, weights: src });
    src.assertAllUsed();
    return g;
  }
  const renamed = renameKeys ? new Map([...tensors].map(([k, t]) => [renameKeys(k), t])) : tensors;
  const src = new StateDictWeights(file, renamed, { rename: vaeKeyRename, ignore: vaeIgnore(kind) });
  const cfg = parseVaeConfig(json, configPath, kind);
  const o = { seed: 0, weights: src };
  const g = kind === "vae_encoder" ? buildVaeEncoder(cfg, o) : buildVaeDecoder(cfg, o, kind);
  src.assertAllUsed();
  return g;
}

function compare(
  t: { diagnostic(msg: string): void },
  name: string,
  got: ort.Tensor,
  want: ort.Tensor,
): void {
  assert.deepEqual(got.dims, want.dims, `${name}: shape`);
  const d = maxAbsDiff(got.data as Float32Array, want.data as Float32Array);
  t.diagnostic(
    `${name}: max |ours - PyTorch| = ${d.toExponential(2)} (max |PyTorch| ${maxAbs(want.data as Float32Array).toFixed(2)})`,
  );
  assert.ok(d <= TOLERANCE, `${name}: max abs diff ${d} > ${TOLERANCE}`);
}

const cases = await listCases(ROOT);

test("the textvae golden set is present: 2 configs x 2 cases for each of the four nets, encoder cases included", () => {
  const names = cases.map((d) => d.slice(ROOT.length + 1));
  for (const net of ["clip_text", "x4_text", "sd_vae", "x4_vae"])
    for (const cfg of ["a", "b"])
      assert.ok(
        names.filter((n) => n.startsWith(`${net}/${cfg}/`)).length >= 2,
        `${net}/${cfg}: cases missing`,
      );
  assert.equal(names.filter((n) => n.includes("/encode_")).length, 4);
});

for (const dir of cases) {
  test(`golden ${dir.slice(GOLDEN_ROOT.length)}: our graph on the saved weights equals PyTorch`, async (t) => {
    const c = await loadCase(dir);
    const meta = c.meta as unknown as Meta;
    const g = await importGraph(join(dir, meta.model), meta.graph);
    const out = await runGraph(g, c.inputs);
    for (const [name, got] of Object.entries(out)) compare(t, `${c.name} ${name}`, got, c.outputs.get(name)!);
    if (meta.graph === "vae_encoder") {
      // The posterior callers derive from the moments equals diffusers' (clamp included: config b's
      // quant_conv pushes some log-variances past both ends of [-30, 20]).
      const params = out.latent_parameters!;
      const { mean, logvar, shape } = splitMoments(params.data as Float32Array, params.dims);
      for (const [name, data] of [
        ["mean", mean],
        ["logvar", logvar],
      ] as const)
        compare(t, `${c.name} ${name}`, new ort.Tensor("float32", data, shape), c.outputs.get(name)!);
    }
  });
}

test("a VAE saved with later diffusers' attention names (to_q, to_k, to_v, to_out.0) imports to the same graph", async (t) => {
  const toNew = (key: string) =>
    key.replace(
      /(mid_block\.attentions\.\d+)\.(query|key|value|proj_attn)\./,
      (_, p: string, n: string) =>
        `${p}.${({ query: "to_q", key: "to_k", value: "to_v", proj_attn: "to_out.0" } as Record<string, string>)[n]}.`,
    );
  for (const [sub, kind] of [
    ["sd_vae/b/decode_3x5x3", "vae_decoder"],
    ["sd_vae/a/encode_2x24x40", "vae_encoder"],
  ] as const) {
    const c = await loadCase(join(ROOT, sub));
    const g = await importGraph(join(ROOT, sub, "../model"), kind, toNew);
    const out = await runGraph(g, c.inputs);
    for (const [name, got] of Object.entries(out))
      compare(t, `${sub} (renamed keys) ${name}`, got, c.outputs.get(name)!);
  }
});
