import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { parseJobSeed } from "./options.ts";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const root = mkdtempSync(join(tmpdir(), "lavie-cli-"));
after(() => rmSync(root, { recursive: true, force: true }));

function lavie(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [join(repo, "bin", "lavie.js"), ...args], { cwd: repo });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("error", reject);
    p.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

test("lavie models params --preset lavie prints the parameter table", async () => {
  const r = await lavie("models", "params", "--preset", "lavie");
  assert.equal(r.code, 0, r.stderr);
  for (const id of ["clip_text", "base_unet", "vsr_unet", "x4_vae_decoder", "total"])
    assert.match(r.stdout, new RegExp(id));
  assert.match(r.stdout, /909,124,100|\d{3},\d{3},\d{3}/);
});

test("a bad --preset exits 2 naming the option and the allowed values, without a stack trace", async () => {
  const r = await lavie("models", "params", "--preset", "nope");
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--preset/);
  assert.match(r.stderr, /tiny, small, lavie/);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  const b = await lavie("models", "build", "--preset", "lavie", "--out", join(root, "x"));
  assert.equal(b.code, 2);
  assert.match(b.stderr, /--preset.*allowed: tiny, small/);
});

test("build then verify a tiny directory; verify of a non-directory exits 1", async () => {
  const dir = join(root, "tiny");
  const b = await lavie("models", "build", "--preset", "tiny", "--out", dir, "--seed", "5");
  assert.equal(b.code, 0, b.stderr);
  assert.match(b.stdout, /\[8\/8\] x4_vae_decoder/);
  assert.match(b.stdout, /8 networks, [\d,]+ parameters/);
  const v = await lavie("models", "verify", dir);
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stdout, /^OK: /m);
  const bad = await lavie("models", "verify", join(root, "nothing"));
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /does not exist/);
  assert.doesNotMatch(bad.stderr, /\n\s+at /);
});

test("--seed has the job seed's one range and message (core/seed.ts); the weight seed keeps its own", async () => {
  for (const [seed, shown] of [
    ["9007199254740992", "9007199254740992"],
    ["-1", "-1"],
    ["1.5", '"1.5"'],
  ] as const) {
    const r = await lavie("generate", "x", "--preset", "tiny", "--seed", seed);
    assert.equal(r.code, 2, r.stderr);
    assert.ok(
      r.stderr.includes(
        `option '--seed <n>' argument '${seed}' is invalid. must be an integer in 0..9007199254740991, got ${shown}`,
      ),
      r.stderr,
    );
  }
  assert.equal(parseJobSeed("9007199254740991"), 2 ** 53 - 1);
  assert.equal(parseJobSeed(" 7 "), 7);
  assert.throws(() => parseJobSeed("18446744073709551615"), {
    message: "must be an integer in 0..9007199254740991, got 18446744073709551615",
  });
  const w = await lavie(
    "models",
    "build",
    "--preset",
    "tiny",
    "--out",
    join(root, "w"),
    "--seed",
    "4294967296",
  );
  assert.equal(w.code, 2);
  assert.match(w.stderr, /must be an integer in 0\.\.4294967295/);
});
