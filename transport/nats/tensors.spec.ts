import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { LavieError } from "../../core/errors.ts";
import type { Tensor } from "../../core/tensor.ts";
import { type NatsServerHandle, startNatsServer } from "../../test/support/nats-server.ts";
import { connectNats, type NatsClients } from "./connect.ts";
import { NatsTensorStore, type TensorRef } from "./tensors.ts";

function randomTensor(shape: number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const bytes = randomBytes(n * 4);
  return { shape, data: new Float32Array(bytes.buffer, bytes.byteOffset, n) };
}

const bytesOf = (t: Tensor) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);

function isIntegrityError(err: unknown, ...needles: string[]): boolean {
  assert.ok(err instanceof LavieError, String(err));
  assert.equal(err.code, "data_loss");
  assert.equal(err.retryable, true);
  for (const n of needles) assert.match(err.message, new RegExp(n.replace(/[[\]]/g, "\\$&")));
  return true;
}

describe("NatsTensorStore", () => {
  let srv: NatsServerHandle;
  let c: NatsClients;
  let store: NatsTensorStore;

  before(async () => {
    srv = await startNatsServer({ jetstream: true });
    c = await connectNats(srv.url, { name: "tensors-spec" });
    store = await NatsTensorStore.open(c.objm);
  });
  after(async () => {
    await c?.close();
    await srv?.stop();
  });

  test("put/get round trip is bit-identical over several chunks, digest is sha256 of the bytes", async () => {
    // 3 MiB + a bit: four 1 MiB chunks, the last one partial.
    const t = randomTensor([1, 3, 2, 128, 1025]);
    const ref = await store.put("job1/latents/0", t);
    const sha = createHash("sha256").update(bytesOf(t)).digest("hex");
    assert.deepEqual(ref, {
      object: "job1/latents/0",
      dtype: "float32",
      shape: [1, 3, 2, 128, 1025],
      digest: `sha256:${sha}`,
      bytes: t.data.byteLength,
    });
    const back = await store.get(ref);
    assert.deepEqual(back.shape, t.shape);
    assert.equal(Buffer.compare(bytesOf(back), bytesOf(t)), 0);
  });

  test("an empty tensor round-trips", async () => {
    const ref = await store.put("job1/empty/0", { shape: [0, 4], data: new Float32Array(0) });
    const back = await store.get(ref);
    assert.deepEqual(back.shape, [0, 4]);
    assert.equal(back.data.length, 0);
  });

  test("a ref whose digest, size or shape differs from the stored object is rejected", async () => {
    const ref = await store.put("job1/x/0", randomTensor([4, 1000]));
    const wrong = `sha256:${"0".repeat(64)}`;
    await assert.rejects(store.get({ ...ref, digest: wrong }), (e) =>
      isIntegrityError(e, "job1/x/0", wrong, ref.digest),
    );
    await assert.rejects(store.get({ ...ref, shape: [4, 999] }), (e) => isIntegrityError(e, "job1/x/0"));
    await assert.rejects(store.get({ ...ref, shape: [2, 2000] }), (e) =>
      isIntegrityError(e, "shape mismatch"),
    );
    // Overwritten since the ref was taken: the stale ref no longer matches.
    await store.put("job1/x/0", randomTensor([4, 1000]));
    await assert.rejects(store.get(ref), (e) => isIntegrityError(e, "digest mismatch"));
  });

  test("content corrupted in the stream is detected by the digest check", async () => {
    const t = randomTensor([3, 100_000]);
    const ref = await store.put("job1/bad/0", t);
    const info = await (await c.objm.open("lavie-tensors")).info("job1/bad/0");
    assert.ok(info);
    // Replace the stored chunks with same-sized, different bytes.
    const subject = `$O.lavie-tensors.C.${info.nuid}`;
    await c.jsm.streams.purge("OBJ_lavie-tensors", { filter: subject });
    const bad = Buffer.from(bytesOf(t));
    bad[12345] = (bad[12345] ?? 0) ^ 1;
    for (let at = 0; at < bad.length; at += 1 << 20)
      await c.js.publish(subject, bad.subarray(at, at + (1 << 20)));
    await assert.rejects(store.get(ref), (e) => isIntegrityError(e, "job1/bad/0", "digests do not match"));
  });

  test("a missing object is not_found", async () => {
    const ref: TensorRef = {
      object: "nope/t/0",
      dtype: "float32",
      shape: [1],
      digest: "sha256:00",
      bytes: 4,
    };
    await assert.rejects(store.get(ref), (e) => e instanceof LavieError && e.code === "not_found");
  });

  test("deletePrefix removes one job's objects and nothing else", async () => {
    const t = randomTensor([16]);
    for (const n of ["jobA/lat/0", "jobA/lat/1", "jobA/pix/0", "jobAB/lat/0", "jobB/lat/0"])
      await store.put(n, t);
    const refA = await store.put("jobA/lat/2", t);
    assert.equal(await store.deletePrefix("jobA/"), 4);
    assert.deepEqual(await store.list("jobA/"), []);
    assert.deepEqual(
      (await store.list("job")).filter((n) => n.startsWith("jobA")),
      ["jobAB/lat/0"],
    );
    assert.deepEqual(await store.list("jobB/"), ["jobB/lat/0"]);
    await assert.rejects(store.get(refA), (e) => e instanceof LavieError && e.code === "not_found");
    assert.equal(await store.delete("jobB/lat/0"), true);
    assert.equal(await store.delete("jobB/lat/0"), false);
  });

  test("putBytes/getBytes stream a blob in chunks", async () => {
    const parts = Array.from({ length: 9 }, (_, i) => randomBytes(300_000 + i));
    async function* src() {
      for (const p of parts) yield new Uint8Array(p);
    }
    const ref = await store.putBytes("jobV/video.mp4", src(), { contentType: "video/mp4" });
    const all = Buffer.concat(parts);
    assert.equal(ref.bytes, all.length);
    assert.equal(ref.digest, `sha256:${createHash("sha256").update(all).digest("hex")}`);
    const got: Buffer[] = [];
    let n = 0;
    for await (const chunk of store.getBytes(ref)) {
      got.push(Buffer.from(chunk));
      n++;
    }
    assert.ok(n >= 3, `expected several chunks, got ${n}`);
    assert.equal(Buffer.compare(Buffer.concat(got), all), 0);
    await assert.rejects(
      async () => {
        for await (const _ of store.getBytes({ ...ref, bytes: ref.bytes + 1 })) {
          // unreachable
        }
      },
      (e) => isIntegrityError(e, "size mismatch"),
    );
  });

  test("stat() reports size, digest and recorded shape without reading; null when absent", async () => {
    const t = randomTensor([1, 2, 3]);
    const ref = await store.put("jobS/latents/0", t);
    assert.deepEqual(await store.stat("jobS/latents/0"), {
      object: ref.object,
      bytes: ref.bytes,
      digest: ref.digest,
      shape: [1, 2, 3],
    });
    assert.equal(await store.stat("jobS/nothing"), null);
    await store.delete("jobS/latents/0");
    assert.equal(await store.stat("jobS/latents/0"), null);
  });
  test("names with wildcards, .. or control characters and huge shapes are refused before any I/O", async () => {
    const invalid = (e: unknown) => e instanceof LavieError && e.code === "invalid_argument";
    for (const name of ["", "j/../k", "j//x", "j/*", "j/>", "j/a b", "j/\u0001", "./x", "x".repeat(1025)]) {
      await assert.rejects(store.put(name, randomTensor([1])), invalid, name);
      await assert.rejects(store.putBytes(name, [new Uint8Array(1)]), invalid, name);
      await assert.rejects(
        store.getBytes({ object: name, digest: "sha256:00", bytes: 1 }).next(),
        invalid,
        name,
      );
    }
    const huge = { object: "j/huge", dtype: "float32" as const, digest: "sha256:00" };
    await assert.rejects(store.get({ ...huge, shape: [1e9, 1e9], bytes: 4e18 }), invalid);
    await assert.rejects(store.get({ ...huge, shape: [-1, 4], bytes: -16 }), invalid);
  });
});
