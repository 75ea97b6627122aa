/**
 * LaVie's base and interpolation UNets against PyTorch (python/lavie_ref/golden/unets.py, whose
 * reference matches the official code): each config directory holds a diffusers-style config.json and
 * checkpoint.pt in the official format (torch.save({"ema": state_dict})). The config goes through our
 * importer, the checkpoint through the checkpoint reader with every key accounted for, our graph is
 * built on those weights and run with onnxruntime-node (CPU, 2 threads), and out_sample must equal
 * PyTorch's within 1e-4.
 */
import assert from "node:assert/strict";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { importNetwork } from "../../models/import/lavie.ts";
import type { UNetImportKind } from "../../models/import/unet_config.ts";
import type { GraphBuilder } from "../../models/onnx/graph.ts";
import { GOLDEN_ROOT, listCases, loadCase, maxAbs, maxAbsDiff, runGraph } from "../support/golden.ts";

const TOLERANCE = 1e-4;
const ROOT = join(GOLDEN_ROOT, "unets");

interface Meta {
  network: UNetImportKind;
  /** Relative to the case directory. */
  config: string;
  checkpoint: string;
}

/** One graph per config directory (its cases share the weights). */
const graphs = new Map<string, Promise<GraphBuilder>>();

/** The network exactly as `lavie models import` builds it from these files. */
async function importUNet(
  configPath: string,
  checkpointPath: string,
  kind: UNetImportKind,
): Promise<GraphBuilder> {
  return (await importNetwork(kind, { config: configPath, weights: checkpointPath })).graph;
}

const cases = await listCases(ROOT);

test("the unets golden set is present: two configs per network, several cases each", () => {
  const names = cases.map((d) => d.slice(ROOT.length + 1));
  for (const net of ["base_unet", "interp_unet"])
    for (const cfg of ["a", "b"])
      assert.ok(
        names.filter((n) => n.startsWith(`${net}-${cfg}/`)).length >= 2,
        `${net}-${cfg}: cases missing`,
      );
});

for (const dir of cases) {
  test(`golden ${dir.slice(GOLDEN_ROOT.length)}: our UNet on the official checkpoint equals PyTorch`, async (t) => {
    const c = await loadCase(dir);
    const meta = c.meta as unknown as Meta;
    const configPath = resolve(dir, meta.config);
    const key = dirname(configPath);
    let g = graphs.get(key);
    if (!g) graphs.set(key, (g = importUNet(configPath, resolve(dir, meta.checkpoint), meta.network)));
    const out = await runGraph(await g, c.inputs);
    const got = out.out_sample;
    const want = c.outputs.get("out_sample");
    assert.ok(got && want, "out_sample");
    assert.deepEqual(got.dims, want.dims, "shape");
    const d = maxAbsDiff(got.data as Float32Array, want.data as Float32Array);
    t.diagnostic(
      `${c.name}: max |ours - PyTorch| = ${d.toExponential(2)} (max |PyTorch| ${maxAbs(want.data as Float32Array).toFixed(2)})`,
    );
    assert.ok(d <= TOLERANCE, `${c.name}: max abs diff ${d} > ${TOLERANCE}`);
  });
}
