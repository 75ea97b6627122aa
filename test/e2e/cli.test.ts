/**
 * The `lavie` CLI as users run it: a real process, a real MP4 file decoded back, and clear errors
 * for bad options (exit code 2, the option named, nothing run).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { decodeVideo } from "../../media/index.ts";

const exec = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), "lavie-cli-"));

async function lavie(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec(process.execPath, ["bin/lavie.js", ...args], { timeout: 300_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

test("generate writes a 61-frame MP4 at 4x the base size; interpolate and upscale run single stages", async () => {
  const out = join(dir, "panda.mp4");
  const r = await lavie(
    "generate",
    "a panda playing guitar",
    "--preset",
    "tiny",
    "--steps",
    "2",
    "--out",
    out,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /wrote .*panda\.mp4: 61 frames 192x128 @ 24 fps/);
  const video = await decodeVideo(out);
  assert.equal(video.frames.length, 61);
  assert.equal(video.width, 192);
  assert.equal(video.height, 128);

  const base = join(dir, "base.mp4");
  const b = await lavie(
    "generate",
    "a cat",
    "--preset",
    "tiny",
    "--steps",
    "1",
    "--stop-after",
    "base",
    "--out",
    base,
  );
  assert.equal(b.code, 0, b.stderr);
  assert.equal((await decodeVideo(base)).frames.length, 16);

  const smooth = join(dir, "smooth.mp4");
  const i = await lavie(
    "interpolate",
    base,
    "--prompt",
    "a cat",
    "--preset",
    "tiny",
    "--steps",
    "1",
    "--out",
    smooth,
  );
  assert.equal(i.code, 0, i.stderr);
  const sv = await decodeVideo(smooth);
  assert.deepEqual([sv.frames.length, sv.width, sv.height, sv.fps], [61, 48, 32, 24]);

  const big = join(dir, "big.mp4");
  const u = await lavie(
    "upscale",
    base,
    "--prompt",
    "a cat",
    "--preset",
    "tiny",
    "--steps",
    "1",
    "--out",
    big,
  );
  assert.equal(u.code, 0, u.stderr);
  const bv = await decodeVideo(big);
  assert.deepEqual([bv.frames.length, bv.width, bv.height], [16, 192, 128]);
});

test("bad options are refused before any work, naming the option and what is allowed", async () => {
  const cases: [string[], RegExp][] = [
    [
      ["generate", "x", "--preset", "tiny", "--steps", "0"],
      /--base-steps \(or --steps\): must be an integer in 1\.\.1000/,
    ],
    [
      ["generate", "x", "--preset", "tiny", "--vsr-sampler", "plms"],
      /--vsr-sampler: unknown sampler "plms"; allowed: ddpm, ddim, euler/,
    ],
    [["generate", "  ", "--preset", "tiny"], /prompt: must not be empty/],
    [["generate", "x", "--preset", "huge"], /unknown preset "huge"; allowed: tiny, small, lavie/],
    [["generate", "x", "--preset", "tiny", "--height", "36"], /--height: must be a multiple of 16 pixels/],
    [["generate", "x", "--preset", "tiny", "--guidance", "abc"], /--guidance.*must be a number/],
    [["upscale", join(dir, "nope.mp4"), "--prompt", "x", "--preset", "tiny"], /input: .*nope\.mp4/],
  ];
  for (const [args, re] of cases) {
    const r = await lavie(...args);
    assert.equal(r.code, 2, `${args.join(" ")} -> exit ${r.code}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
  }
});
