import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { LavieError } from "../../core/errors.ts";
import { buildZip } from "./testing.ts";
import { ZipArchive } from "./zip.ts";

const dir = mkdtempSync(join(tmpdir(), "lavie-zip-"));
after(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function save(bytes: Uint8Array): string {
  const path = join(dir, `case${n++}.zip`);
  writeFileSync(path, bytes);
  return path;
}

const text = Buffer.from("hello, checkpoint ".repeat(50));
const binary = Uint8Array.from({ length: 1000 }, (_, i) => (i * 37) & 0xff);

function centralAt(zip: Buffer, index = 0): number {
  let p = -1;
  for (let i = 0; i <= index; i++) p = zip.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]), p + 1);
  return p;
}

async function refusedOnOpen(bytes: Uint8Array, pattern: RegExp): Promise<void> {
  await assert.rejects(ZipArchive.open(save(bytes)), (err: unknown) => {
    assert.ok(err instanceof LavieError, `expected LavieError, got ${err}`);
    assert.equal(err.code, "data_loss");
    assert.match(err.message, pattern);
    return true;
  });
}

for (const zip64 of [false, true]) {
  test(`stored and deflated entries read back (${zip64 ? "ZIP64" : "plain"} records)`, async () => {
    const zip = await ZipArchive.open(
      save(
        buildZip(
          [
            { name: "archive/data.pkl", data: text, method: 8 },
            { name: "archive/data/0", data: binary },
            { name: "archive/empty", data: new Uint8Array(0), method: 8 },
          ],
          { zip64 },
        ),
      ),
    );
    assert.deepEqual([...zip.entries.keys()], ["archive/data.pkl", "archive/data/0", "archive/empty"]);
    assert.deepEqual(Buffer.from(await zip.read("archive/data.pkl")), text);
    assert.deepEqual(await zip.read("archive/data/0"), binary);
    assert.deepEqual(await zip.readRange("archive/data/0", 10, 5), binary.subarray(10, 15));
    assert.deepEqual(Buffer.from(await zip.readRange("archive/data.pkl", 7, 10)), text.subarray(7, 17));
    assert.equal((await zip.read("archive/empty")).length, 0);
    await assert.rejects(zip.readRange("archive/data/0", 995, 10), /range 995\+10 lies outside entry/);
    await assert.rejects(zip.read("archive/missing"), /archive has no entry "archive\/missing"/);
  });
}

test("a truncated archive is refused", async () => {
  const whole = buildZip([{ name: "a", data: binary }], { zip64: true });
  for (const cut of [1, 10, 30, 100, whole.length - 200]) {
    await refusedOnOpen(
      whole.subarray(0, whole.length - cut),
      /truncated: no end-of-central-directory record/,
    );
  }
  const plain = buildZip([{ name: "a", data: binary }]);
  await refusedOnOpen(
    plain.subarray(600),
    /central directory \(47 bytes at 1031\) runs past its end record at 478/,
  );
  await refusedOnOpen(whole.subarray(600), /ZIP64 record offset 1106 exceeds the file size 604/);
  await refusedOnOpen(Buffer.from("PK"), /not a zip archive/);
  await refusedOnOpen(Buffer.alloc(4096, 7), /no end-of-central-directory record/);
});

test("an entry claiming a size or offset past the end of the file is refused", async () => {
  const zip = buildZip([{ name: "a", data: binary }]);
  const c = centralAt(zip);
  const bigger = Buffer.from(zip);
  bigger.writeUInt32LE(0x7fffffff, c + 20);
  bigger.writeUInt32LE(0x7fffffff, c + 24);
  await refusedOnOpen(bigger, /entry "a": declares 2147483647 bytes at 0, past the entry area/);
  const moved = Buffer.from(zip);
  moved.writeUInt32LE(5000, c + 42);
  await refusedOnOpen(moved, /entry "a": declares 1000 bytes at 5000, past the entry area/);
  const z64 = buildZip([{ name: "a", data: binary }], { zip64: true });
  const huge = Buffer.from(z64);
  huge.writeBigUInt64LE(1n << 60n, centralAt(z64) + 46 + 1 + 4 + 8);
  await refusedOnOpen(huge, /entry "a" compressedSize 1152921504606846976 exceeds the file size/);
});

test("local headers that disagree with the central directory are refused on read", async () => {
  const zip = Buffer.from(
    buildZip([
      { name: "a", data: binary },
      { name: "b", data: text },
    ]),
  );
  zip.write("x", 30); // the local name of "a"
  const archive = await ZipArchive.open(save(zip));
  await assert.rejects(archive.read("a"), /entry "a": local header names a different entry/);
  const shifted = Buffer.from(buildZip([{ name: "a", data: binary }]));
  shifted.writeUInt16LE(60000, 28); // local extra length pushes the data past the entry area
  await assert.rejects((await ZipArchive.open(save(shifted))).read("a"), /runs past the entry area/);
});

test("corrupt data fails the CRC or the declared size", async () => {
  const zip = Buffer.from(buildZip([{ name: "a", data: binary }]));
  zip.writeUInt8(zip.readUInt8(131) ^ 1, 131);
  await assert.rejects((await ZipArchive.open(save(zip))).read("a"), /entry "a" fails its CRC-32 check/);
  const small = Buffer.from(buildZip([{ name: "t", data: text, method: 8 }]));
  const c = centralAt(small);
  small.writeUInt32LE(100, c + 24); // declares 100 of the 900 bytes
  await assert.rejects(
    (await ZipArchive.open(save(small))).read("t"),
    /does not inflate to its declared 100 bytes/,
  );
  const bomb = Buffer.from(small);
  bomb.writeUInt32LE(0xfffffff0, c + 24);
  await refusedOnOpen(bomb, /more than deflate can produce/);
});

test("encryption, other methods, duplicates and absurd counts are refused", async () => {
  const zip = buildZip([{ name: "a", data: binary }]);
  const c = centralAt(zip);
  const enc = Buffer.from(zip);
  enc.writeUInt16LE(1, c + 8);
  await refusedOnOpen(enc, /entry "a": entry is encrypted/);
  const bzip = Buffer.from(zip);
  bzip.writeUInt16LE(12, c + 10);
  await refusedOnOpen(bzip, /compression method 12 is not supported/);
  await refusedOnOpen(
    buildZip([
      { name: "a", data: binary },
      { name: "a", data: binary },
    ]),
    /entry "a": entry appears twice/,
  );
  const many = Buffer.from(zip);
  many.writeUInt16LE(60000, many.length - 22 + 10);
  await refusedOnOpen(many, /60000 entries cannot fit a 47-byte central directory/);
  const disks = Buffer.from(zip);
  disks.writeUInt16LE(3, disks.length - 22 + 4);
  await refusedOnOpen(disks, /multi-disk/);
});
