import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { gzipSync } from "node:zlib";
import { LavieError } from "../../core/errors.ts";
import {
  bundledClipVocabFiles,
  CLIP_MERGE_COUNT,
  CLIP_VOCAB_SIZE,
  clipVocabFilesFromBpe,
  readClipBpe,
} from "./clip_vocab.ts";

const files = await bundledClipVocabFiles();

test("the bundled BPE file gives CLIP's 49,408-token vocab.json in CLIP's layout", () => {
  const vocab = JSON.parse(files.vocabJson) as Record<string, number>;
  assert.equal(Object.keys(vocab).length, CLIP_VOCAB_SIZE);
  const ids = Object.values(vocab).sort((a, b) => a - b);
  assert.deepEqual(ids, [...ids.keys()], "ids are 0..49407");
  // Known ids of the real CLIP vocabulary.
  for (const [token, id] of [
    ["!", 0],
    ["a", 64],
    ["Ā", 188], // byte 0x00, first of the shifted byte symbols
    ["!</w>", 256],
    ["in", 512], // first merge "i n"
    ["a</w>", 320],
    ["photo</w>", 1125],
    ["of</w>", 539],
    ["cat</w>", 2368],
    ["<|startoftext|>", 49406],
    ["<|endoftext|>", 49407],
  ] as const) {
    assert.equal(vocab[token], id, token);
  }
  assert.ok(files.vocabJson.startsWith('{"!": 0, "\\"": 1, "#": 2'), "written in id order");
});

test("merges.txt: header plus CLIP's first 48,894 merges, each closed over the vocabulary", () => {
  const lines = files.mergesTxt.trimEnd().split("\n");
  assert.equal(lines[0], "#version: 0.2");
  assert.equal(lines.length, CLIP_MERGE_COUNT + 1);
  assert.deepEqual(lines.slice(1, 4), ["i n", "t h", "a n"]);
  const vocab = JSON.parse(files.vocabJson) as Record<string, number>;
  for (const [rank, line] of lines.slice(1).entries()) {
    const [l, r] = line.split(" ") as [string, string];
    assert.equal(vocab[l + r], 512 + rank, `merge ${rank} "${line}" has its token at 512 + rank`);
  }
});

test("a truncated or garbled BPE file is refused with data_loss naming it", async () => {
  const bpe = await readClipBpe();
  const lines = bpe.split("\n");
  assert.throws(
    () => clipVocabFilesFromBpe(lines.slice(0, 1000).join("\n"), "short.txt"),
    (e) => e instanceof LavieError && e.code === "data_loss" && /short\.txt: has 1000 lines/.test(e.message),
  );
  const garbled = [...lines];
  garbled[7] = "nospace";
  assert.throws(() => clipVocabFilesFromBpe(garbled.join("\n")), /line 7 is "nospace"/);
  const dir = mkdtempSync(join(tmpdir(), "bpe-"));
  writeFileSync(join(dir, "plain.txt"), "not gzip");
  await assert.rejects(readClipBpe(join(dir, "plain.txt")), /plain\.txt: is not a gzip file/);
  await assert.rejects(readClipBpe(join(dir, "missing.gz")), /missing\.gz: cannot be read/);
  writeFileSync(join(dir, "ok.gz"), gzipSync(bpe));
  assert.equal(await readClipBpe(join(dir, "ok.gz")), bpe);
});
