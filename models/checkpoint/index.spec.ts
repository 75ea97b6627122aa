import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { LavieError } from "../../core/errors.ts";
import { f32ToF16Bits } from "./dtypes.ts";
import { readDiffusersFolder, readStateDict, type TensorRecord, writeSafetensors } from "./index.ts";
import { type Expected, expected, FIXTURES, valuesOf } from "./testing.ts";

const dir = mkdtempSync(join(tmpdir(), "lavie-statedict-"));
after(() => rmSync(dir, { recursive: true, force: true }));

async function matches(tensors: Map<string, TensorRecord>, want: Record<string, Expected>): Promise<void> {
  assert.deepEqual([...tensors.keys()].sort(), Object.keys(want).sort());
  for (const [key, t] of tensors) {
    assert.equal(t.dtype, want[key]!.dtype, key);
    assert.deepEqual(t.shape, want[key]!.shape, key);
    assert.deepEqual(valuesOf(await t.read()), want[key]!.values, key);
  }
}

function rejectsWith(code: string, pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof LavieError, String(err));
    assert.equal(err.code, code);
    assert.match(err.message, pattern);
    return true;
  };
}

test("readStateDict: safetensors, a flat torch .pt and a HF-style .bin", async () => {
  const all = expected();
  await matches(await readStateDict(join(FIXTURES, "state.safetensors")), all["state.safetensors"]!);
  await matches(await readStateDict(join(FIXTURES, "state.pt")), all["state.pt"]!);
  const bin = await readStateDict(join(FIXTURES, "module.bin"));
  await matches(bin, all["module.bin"]!);
  assert.equal(bin.get("0.weight")!.source, `${join(FIXTURES, "module.bin")}: 0.weight`);
});

test("readStateDict: a checkpoint of several dicts needs entry, and says which there are", async () => {
  const path = join(FIXTURES, "nested.pt");
  const nested = expected()["nested.pt"]!;
  await assert.rejects(
    readStateDict(path),
    rejectsWith(
      "invalid_argument",
      /nested\.pt holds several dicts; choose the state dict with entry \(top-level keys: ema \(dict, 4 tensors\), model \(dict, 4 tensors\), args \(Namespace\), step \(number 5\)\)/,
    ),
  );
  const ema = await readStateDict(path, { entry: "ema" });
  await matches(ema, nested.ema as unknown as Record<string, Expected>);
  assert.equal(ema.get("1.bias")!.source, `${path}["ema"]: 1.bias`);
  await matches(
    await readStateDict(path, { entry: "model" }),
    nested.model as unknown as Record<string, Expected>,
  );
  // LaVie's loaders: the "ema" entry when there is one, else the file's own dict.
  await matches(
    await readStateDict(path, { preferEntry: "ema" }),
    nested.ema as unknown as Record<string, Expected>,
  );
  const flatPt = await readStateDict(join(FIXTURES, "state.pt"));
  assert.deepEqual(
    [...(await readStateDict(join(FIXTURES, "state.pt"), { preferEntry: "ema" })).keys()],
    [...flatPt.keys()],
  );
  const flat = await readStateDict(join(FIXTURES, "state.safetensors"));
  assert.deepEqual(
    [...(await readStateDict(join(FIXTURES, "state.safetensors"), { preferEntry: "ema" })).keys()],
    [...flat.keys()],
  );
  await assert.rejects(
    readStateDict(path, { entry: "state_dict" }),
    rejectsWith("invalid_argument", /has no top-level key "state_dict"; it has ema/),
  );
  await assert.rejects(
    readStateDict(path, { entry: "step" }),
    rejectsWith("invalid_argument", /\["step"\] holds number 5, not a dict/),
  );
  await assert.rejects(
    readStateDict(join(FIXTURES, "state.safetensors"), { entry: "ema" }),
    rejectsWith("invalid_argument", /entry selects only inside torch checkpoints/),
  );
  const txt = join(dir, "weights.txt");
  writeFileSync(txt, "");
  await assert.rejects(
    readStateDict(txt),
    rejectsWith("invalid_argument", /unknown checkpoint extension "\.txt"; allowed: \.safetensors, \.bin/),
  );
});

test("readDiffusersFolder: safetensors before .bin, and sharded indexes", async () => {
  const module = expected().module_state!;
  await matches(await readDiffusersFolder(join(FIXTURES, "diffusers_single")), module);
  await matches(await readDiffusersFolder(join(FIXTURES, "diffusers_sharded")), module);
  const binOnly = join(dir, "bin-only");
  mkdirSync(binOnly);
  copyFileSync(join(FIXTURES, "module.bin"), join(binOnly, "pytorch_model.bin"));
  await matches(await readDiffusersFolder(binOnly), module);
  await assert.rejects(
    readDiffusersFolder(dir),
    rejectsWith("not_found", /no weight file found; looked for diffusion_pytorch_model\.safetensors/),
  );
});

test("readDiffusersFolder: an index may name only files in its folder, and only tensors they hold", async () => {
  const shard = "model-00001-of-00002.safetensors";
  const index = (weightMap: Record<string, string>) => {
    const d = mkdtempSync(join(dir, "sharded-"));
    copyFileSync(join(FIXTURES, "diffusers_sharded", shard), join(d, shard));
    writeFileSync(join(d, "model.safetensors.index.json"), JSON.stringify({ weight_map: weightMap }));
    return d;
  };
  await assert.rejects(
    readDiffusersFolder(index({ "0.weight": "../state.safetensors" })),
    rejectsWith(
      "data_loss",
      /weight_map\["0\.weight"\] must name a weight file in the same folder, got "\.\.\/state\.safetensors"/,
    ),
  );
  await assert.rejects(
    readDiffusersFolder(index({ "9.weight": shard })),
    rejectsWith(
      "data_loss",
      /weight_map puts "9\.weight" in model-00001-of-00002\.safetensors, which does not hold it/,
    ),
  );
  const partial = await readDiffusersFolder(index({ "0.bias": shard }));
  assert.deepEqual([...partial.keys()], ["0.bias"]);
});

test("fp16 export: writeSafetensors(F16) of torch weights reads back rounded to half precision", async () => {
  const weights = await readStateDict(join(FIXTURES, "module.bin"));
  const out = join(dir, "fp16.safetensors");
  const values = new Map<string, Float32Array>();
  for (const [k, t] of weights) values.set(k, await t.readFloat32());
  await writeSafetensors(
    out,
    new Map(
      [...weights].map(([k, t]) => [k, { dtype: "F16" as const, shape: t.shape, data: values.get(k)! }]),
    ),
  );
  const back = await readStateDict(out);
  for (const [k, t] of back) {
    assert.equal(t.dtype, "F16");
    const bits = new Uint16Array(new Uint8Array(await t.readBytes()).buffer);
    assert.deepEqual([...bits], Array.from(values.get(k)!, f32ToF16Bits), k);
  }
});
