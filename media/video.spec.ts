import assert from "node:assert/strict";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { LavieError } from "../core/errors.ts";
import { decodeVideo } from "./decode.ts";
import { encodeVideo } from "./encode.ts";
import { findExecutable } from "./ffmpeg.ts";

const W = 64;
const H = 96;
const dir = mkdtempSync(join(tmpdir(), "video-"));
const hasFfmpeg =
  (await findExecutable("ffmpeg")) !== undefined && (await findExecutable("ffprobe")) !== undefined;
const noFfmpeg = hasFfmpeg ? false : "ffmpeg/ffprobe not on PATH";

/** A moving gradient, produced lazily (async) so the encoder has to stream it. */
async function* pattern(count: number): AsyncGenerator<Uint8Array> {
  for (let f = 0; f < count; f++) {
    const frame = new Uint8Array(W * H * 3);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const o = (y * W + x) * 3;
        frame[o] = (x * 4 + f * 3) & 0xff;
        frame[o + 1] = (y * 2) & 0xff;
        frame[o + 2] = f * 4;
      }
    }
    yield frame;
  }
}

const meanAbsDiff = (a: Uint8Array, b: Uint8Array) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
  return s / a.length;
};

async function expected(): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const f of pattern(61)) out.push(f);
  return out;
}

test("ffmpeg: 61 frames at 64x96 encode to MP4 and decode back", { skip: noFfmpeg }, async () => {
  const path = join(dir, "ffmpeg.mp4");
  const res = await encodeVideo(path, pattern(61), { width: W, height: H, fps: 8 });
  assert.deepEqual(res, { path, encoder: "ffmpeg", frameCount: 61 });
  const clip = await decodeVideo(path);
  assert.deepEqual([clip.width, clip.height, clip.fps, clip.frames.length], [W, H, 8, 61]);
  const want = await expected();
  for (const i of [0, 30, 60]) assert.ok(meanAbsDiff(clip.frames[i]!, want[i]!) < 4, `frame ${i} is close`);
});

test("h264-mp4-encoder fallback produces an MP4 ffmpeg decodes with the right frame count", {
  skip: noFfmpeg,
}, async () => {
  const path = join(dir, "wasm.mp4");
  const handlers = process.listenerCount("unhandledRejection") + process.listenerCount("uncaughtException");
  const res = await encodeVideo(path, pattern(61), {
    width: W,
    height: H,
    fps: 8,
    encoder: "h264-mp4-encoder",
  });
  assert.deepEqual(res, { path, encoder: "h264-mp4-encoder", frameCount: 61 });
  const after = process.listenerCount("unhandledRejection") + process.listenerCount("uncaughtException");
  assert.equal(after, handlers, "the wasm runtime's process-wide handlers are removed");
  const clip = await decodeVideo(path);
  assert.deepEqual([clip.width, clip.height, clip.frames.length], [W, H, 61]);
  assert.ok(Math.abs(clip.fps - 8) < 0.01, `fps ${clip.fps}`);
  const want = await expected();
  assert.ok(meanAbsDiff(clip.frames[30]!, want[30]!) < 8);
});

test("odd sizes, wrong frame sizes and bad options are rejected clearly", async () => {
  const path = join(dir, "bad.mp4");
  await assert.rejects(encodeVideo(path, [], { width: 63, height: 96, fps: 8 }), /width: must be even/);
  await assert.rejects(encodeVideo(path, [], { width: 64, height: 96, fps: 0 }), /fps:/);
  for (const encoder of hasFfmpeg
    ? (["ffmpeg", "h264-mp4-encoder"] as const)
    : (["h264-mp4-encoder"] as const)) {
    await assert.rejects(
      encodeVideo(path, [new Uint8Array(10)], { width: W, height: H, fps: 8, encoder }),
      (e: unknown) =>
        e instanceof LavieError && e.field === "frames" && /frame 0 has 10 bytes/.test(e.message),
    );
    assert.equal(existsSync(path), false, "no partial file is left behind");
    await assert.rejects(encodeVideo(path, [], { width: W, height: H, fps: 8, encoder }), /no frames/);
    const good = new Uint8Array(W * H * 3);
    await assert.rejects(
      encodeVideo(path, [good, good, good.subarray(1)], { width: W, height: H, fps: 8, encoder }),
      /frame 2 has/,
    );
    assert.equal(existsSync(path), false);
    const ok = await encodeVideo(path, [good, good], { width: W, height: H, fps: 8, encoder });
    assert.deepEqual([ok.encoder, ok.frameCount], [encoder, 2], "the encoder still works after a failure");
  }
});

test("ffmpeg failures surface ffmpeg's stderr", { skip: noFfmpeg }, async () => {
  const path = join(dir, "no-such-dir", "out.mp4");
  await assert.rejects(
    encodeVideo(path, pattern(3), { width: W, height: H, fps: 8, encoder: "ffmpeg" }),
    (e: unknown) => {
      assert.ok(e instanceof LavieError && e.code === "internal");
      assert.match(e.message, /ffmpeg failed to encode .*exit code 1.*No such file or directory/s);
      return true;
    },
  );
});

test("garbage, missing and empty inputs -> invalid_argument on input", { skip: noFfmpeg }, async () => {
  const garbage = join(dir, "garbage.mp4");
  writeFileSync(garbage, Buffer.from("this is not a video file at all ".repeat(40)));
  const empty = join(dir, "empty.mp4");
  writeFileSync(empty, "");
  for (const [path, why] of [
    [garbage, /is not a readable video/],
    [empty, /is not a readable video/],
    [join(dir, "missing.mp4"), /does not exist/],
  ] as const) {
    await assert.rejects(decodeVideo(path), (e: unknown) => {
      assert.ok(e instanceof LavieError);
      assert.deepEqual([e.code, e.field], ["invalid_argument", "input"]);
      assert.match(e.message, why);
      assert.match(e.message, /accepted: /);
      return true;
    });
  }
});

test("decodeVideo reads a PNG frame directory and enforces maxFrames", async () => {
  const { writePngFrames } = await import("./png-frames.ts");
  const frames = (await expected()).slice(0, 3);
  const pngDir = join(dir, "pngs");
  await writePngFrames(pngDir, { width: W, height: H, fps: 8, frames });
  const clip = await decodeVideo(pngDir, { fps: 24 });
  assert.deepEqual(clip, { width: W, height: H, fps: 24, frames });
  await assert.rejects(decodeVideo(pngDir, { maxFrames: 2 }), /more than 2 frames/);
  if (hasFfmpeg) {
    await assert.rejects(decodeVideo(join(dir, "ffmpeg.mp4"), { maxFrames: 10 }), /more than 10 frames/);
  }
});
