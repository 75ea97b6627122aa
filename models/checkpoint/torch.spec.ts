import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { LavieError } from "../../core/errors.ts";
import { buildZip, expected, FIXTURES, PickleWriter, valuesOf } from "./testing.ts";
import { readTorchCheckpoint, TorchTensor } from "./torch.ts";

const dir = mkdtempSync(join(tmpdir(), "lavie-torch-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("state.pt (torch 2.0.1): every dtype, views, shared storages and parameters read as torch does", async () => {
  const want = expected()["state.pt"]!;
  const root = await readTorchCheckpoint(join(FIXTURES, "state.pt"));
  assert.ok(root instanceof Map);
  assert.deepEqual([...root.keys()], Object.keys(want));
  for (const [key, t] of root as Map<string, TorchTensor>) {
    assert.ok(t instanceof TorchTensor, key);
    const w = want[key]!;
    assert.equal(t.dtype, w.dtype, key);
    assert.deepEqual(t.shape, w.shape, key);
    assert.deepEqual(valuesOf(await t.read()), w.values, key);
    assert.equal((await t.readFloat32()).length, t.numel, key);
  }
  const get = (k: string) => (root as Map<string, TorchTensor>).get(k)!;
  assert.equal(get("transposed").storage, get("base").storage, "views share one storage");
  assert.deepEqual(
    [get("transposed").stride, get("column").stride, get("column").storageOffset],
    [[1, 6], [6], 2],
  );
  assert.deepEqual([get("strided").stride, get("strided").storageOffset], [[6, 2], 6]);
  assert.deepEqual(get("expanded").stride, [1, 0]);
  assert.equal((await get("half_view").readBytes()).length, 12);
});

test("a legacy (pre-1.6) checkpoint and non-zip files are refused with a way out", async () => {
  await assert.rejects(readTorchCheckpoint(join(FIXTURES, "legacy.pt")), (err: unknown) => {
    assert.ok(err instanceof LavieError);
    assert.equal(err.code, "failed_precondition");
    assert.match(
      err.message,
      /legacy\.pt: uses the legacy PyTorch serialization format .* re-save it with torch>=1\.6/,
    );
    return true;
  });
  const junk = join(dir, "junk.pt");
  writeFileSync(junk, "hello world");
  await assert.rejects(readTorchCheckpoint(junk), /junk\.pt: is not a PyTorch zip checkpoint/);
});

test("a truncated checkpoint is refused", async () => {
  const whole = readFileSync(join(FIXTURES, "state.pt"));
  const cut = join(dir, "cut.pt");
  writeFileSync(cut, whole.subarray(0, whole.length - 100));
  await assert.rejects(readTorchCheckpoint(cut), /cut\.pt: not a zip archive or truncated/);
});

interface Fake {
  storage?: string;
  key?: string;
  numel: number;
  offset?: number;
  shape: number[];
  stride: number[];
}

/** A torch-style archive holding {"w": tensor} on one storage of `bytes` bytes. */
function fakeCheckpoint(
  name: string,
  f: Fake,
  bytes: number,
  extra: (w: PickleWriter) => void = () => {},
): string {
  const pkl = new PickleWriter()
    .op(0x7d)
    .str("w")
    .global("torch._utils", "_rebuild_tensor_v2")
    .tuple((t) => {
      t.tuple((pid) =>
        pid
          .str("storage")
          .global("torch", f.storage ?? "FloatStorage")
          .str(f.key ?? "0")
          .str("cpu")
          .int(f.numel),
      ).op(0x51);
      t.int(f.offset ?? 0)
        .ints(f.shape)
        .ints(f.stride)
        .op(0x89)
        .global("collections", "OrderedDict")
        .op(0x29, 0x52);
    })
    .op(0x52, 0x73);
  extra(pkl);
  const path = join(dir, `${name}.pt`);
  writeFileSync(
    path,
    buildZip([
      { name: "archive/data.pkl", data: pkl.done() },
      { name: "archive/data/0", data: new Uint8Array(bytes) },
      { name: "archive/version", data: Buffer.from("3\n") },
    ]),
  );
  return path;
}

test("a hand-built archive reads back; views must fit their storage", async () => {
  const ok = (await readTorchCheckpoint(
    fakeCheckpoint("ok", { numel: 8, shape: [2, 4], stride: [4, 1] }, 32),
  )) as Map<string, TorchTensor>;
  assert.deepEqual(await ok.get("w")!.read(), new Float32Array(8));
  const refused = async (name: string, f: Fake, bytes: number, pattern: RegExp) =>
    assert.rejects(readTorchCheckpoint(fakeCheckpoint(name, f, bytes)), (err: unknown) => {
      assert.ok(err instanceof LavieError, String(err));
      assert.equal(err.code, "data_loss");
      assert.match(err.message, pattern);
      return true;
    });
  await refused(
    "short",
    { numel: 8, shape: [4, 4], stride: [4, 1] },
    32,
    /short\.pt: tensor on archive\/data\/0: shape \[4,4\] with stride \[4,1\] at offset 0 needs 16 elements, but the storage holds 8/,
  );
  await refused(
    "offset",
    { numel: 8, offset: 5, shape: [4], stride: [1] },
    32,
    /at offset 5 needs 9 elements/,
  );
  await refused(
    "strided",
    { numel: 8, shape: [2, 2], stride: [1, 8] },
    32,
    /needs 10 elements, but the storage holds 8/,
  );
  await refused(
    "numel",
    { numel: 100, shape: [4], stride: [1] },
    32,
    /storage of 100 F32 elements does not fit its 32-byte entry/,
  );
  await refused(
    "neg",
    { numel: 8, shape: [2], stride: [-1] },
    32,
    /stride .* must be 1 non-negative integers/,
  );
  await refused("rank", { numel: 8, shape: [2, 2], stride: [1] }, 32, /must be 2 non-negative integers/);
  await refused(
    "traversal",
    { key: "../../etc", numel: 8, shape: [2], stride: [1] },
    32,
    /invalid storage key string/,
  );
  await refused(
    "missing",
    { key: "7", numel: 8, shape: [2], stride: [1] },
    32,
    /archive has no entry "archive\/data\/7"/,
  );
  const before = process.memoryUsage().arrayBuffers;
  await refused(
    "broadcast",
    { numel: 8, shape: [1e12, 1e12], stride: [0, 0] },
    32,
    /shape \[1000000000000, 1000000000000\] needs .* bytes, more than the \d+ available/,
  );
  assert.ok(process.memoryUsage().arrayBuffers - before < 64 * 1024 * 1024);
});

test("a checkpoint whose pickle calls os.system is refused and nothing runs", async () => {
  const marker = join(dir, "pwned");
  const path = fakeCheckpoint("evil", { numel: 8, shape: [8], stride: [1] }, 32, (w) =>
    w.str("x").global("os", "system").str(`touch ${marker}`).op(0x85, 0x52, 0x73),
  );
  await assert.rejects(
    readTorchCheckpoint(path),
    /evil\.pt: archive\/data\.pkl: refusing to load: the pickle references os\.system/,
  );
  assert.equal(existsSync(marker), false);
  const noPickle = join(dir, "nopickle.pt");
  writeFileSync(noPickle, buildZip([{ name: "archive/data/0", data: new Uint8Array(4) }]));
  await assert.rejects(
    readTorchCheckpoint(noPickle),
    /not a PyTorch checkpoint: expected one "<name>\/data\.pkl" entry, found 0/,
  );
});
