import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Command, CommanderError } from "commander";
import { registerWorldCommands } from "../client/cli/commands/world.ts";
import { LavieError } from "../core/errors.ts";
import { readSafetensors } from "../models/checkpoint/safetensors.ts";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..");
const root = mkdtempSync(join(tmpdir(), "lavie-world-cli-"));
after(() => rmSync(root, { recursive: true, force: true }));

/** Runs `lavie world ...` in this process; resolves to its output lines, or the error it failed with. */
async function world(...args: string[]): Promise<{ out: string; err: string; error?: unknown }> {
  const lines: string[] = [];
  const errs: string[] = [];
  const program = new Command("lavie")
    .exitOverride()
    .configureOutput({ writeOut: (s) => lines.push(s), writeErr: (s) => errs.push(s) });
  registerWorldCommands(program, (s) => lines.push(s));
  try {
    await program.parseAsync(["node", "lavie", "world", ...args]);
    return { out: lines.join("\n"), err: errs.join("") };
  } catch (error) {
    return { out: lines.join("\n"), err: errs.join(""), error };
  }
}

test("`lavie world render` (the real entry point) writes an MP4 that `world detect` reads back", async () => {
  const mp4 = join(root, "clip.mp4");
  const caption = "a big yellow square moving left quickly on a gray background";
  const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const p = spawn(
      process.execPath,
      [join(repo, "bin", "lavie.js"), "world", "render", caption, "--out", mp4, "--size", "32x48"],
      { cwd: repo },
    );
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("error", reject);
    p.on("close", (code) => resolve({ code, stdout, stderr }));
  });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /wrote .*clip\.mp4: 16 frames 32x48 \(HxW\) @ 8 fps/);
  assert.match(r.stdout, /scene: a big yellow square moving left quickly on a gray background/);
  const d = await world("detect", mp4, "--prompt", "a yellow square moving to the left");
  assert.equal(d.error, undefined);
  assert.match(d.out, /16 frames 32x48 \(HxW\) @ 8 fps/);
  assert.match(d.out, /yellow\s+square\s+left\s+fast/);
  assert.match(d.out, /caption matches/);
  const no = await world("detect", mp4, "--prompt", "a yellow circle moving up");
  assert.match(no.out, /caption does not match: \[\{"colour":true,"shape":false,"motion":false\}\]/);
});

test("`lavie world dataset` writes the file the options describe", async () => {
  const path = join(root, "d.safetensors");
  const r = await world(
    "dataset",
    "--count",
    "3",
    "--seed",
    "4",
    "--size",
    "16x24",
    "--frames",
    "61",
    "--fps",
    "32",
    "--split",
    "heldout",
    "--dtype",
    "f16",
    "--captions",
    "2",
    "--out",
    path,
  );
  assert.equal(r.error, undefined, String(r.error));
  assert.match(r.out, /video\s+F16 \[3, 3, 61, 16, 24\]/);
  assert.match(r.out, /wrote .*d\.safetensors: 3 clips \(heldout\)/);
  const { tensors, metadata } = await readSafetensors(path);
  assert.deepEqual(tensors.get("video")!.shape, [3, 3, 61, 16, 24]);
  assert.deepEqual(JSON.parse(metadata!.splits!), ["heldout", "heldout", "heldout"]);
  assert.equal(JSON.parse(metadata!.captions!)[0].length, 2);
});

test("bad input is refused naming the option (or the caption) and what is allowed", async () => {
  const out = join(root, "x");
  const usage = async (args: string[], re: RegExp) => {
    const r = await world(...args);
    assert.ok(r.error instanceof CommanderError, `${args.join(" ")}: ${String(r.error)}`);
    assert.match(r.err, re);
  };
  await usage(
    ["dataset", "--count", "2", "--size", "64by96", "--out", out],
    /--size <HxW>.*must be HEIGHTxWIDTH/,
  );
  await usage(["dataset", "--count", "0", "--out", out], /--count <n>.*must be an integer in 1\.\.1000000/);
  await usage(
    ["dataset", "--count", "2", "--split", "test", "--out", out],
    /must be one of train, heldout, any/,
  );
  await usage(
    ["dataset", "--count", "2", "--also", "fps4,fps8", "--out", out],
    /unknown variant "fps8"; allowed.*fps4, res4, fps4_res4/,
  );
  await usage(
    ["dataset", "--count", "2", "--two-objects", "1.5", "--out", out],
    /--two-objects.*must be a number in \[0, 1\]/,
  );
  await usage(
    ["render", "a red circle", "--out", out, "--fps", "0"],
    /--fps.*must be a number in \(0, 1000\]/,
  );
  await usage(["dataset", "--count", "2"], /required option '--out <file>'/);
  const invalid = async (args: string[], re: RegExp) => {
    const r = await world(...args);
    assert.ok(r.error instanceof LavieError && r.error.code === "invalid_argument", String(r.error));
    assert.match(r.error.message, re);
  };
  await invalid(
    ["dataset", "--count", "9999", "--size", "256x384", "--also", "fps4", "--out", out],
    /^--count: at most \d+ clips/,
  );
  await invalid(
    ["render", "a purple thing", "--out", `${out}.mp4`],
    /^caption: the object has no shape; allowed: circle, square, triangle/,
  );
  await invalid(
    ["render", "a red circle", "--size", "33x48", "--out", `${out}.mp4`],
    /^--size: height must be even/,
  );
});
