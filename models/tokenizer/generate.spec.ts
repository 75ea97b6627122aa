import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { LavieError } from "../../core/errors.ts";
import { BYTE_SYMBOLS, BYTE_TO_SYMBOL } from "./bytes.ts";
import { generateTokenizerJson, trainBpe, writeTokenizerJson } from "./generate.ts";

const sha = (s: string | Buffer) => createHash("sha256").update(s).digest("hex");

test("byte alphabet matches CLIP's bytes_to_unicode", () => {
  assert.equal(BYTE_SYMBOLS.length, 256);
  assert.equal(new Set(BYTE_SYMBOLS).size, 256);
  assert.equal(BYTE_SYMBOLS[0], "!");
  assert.equal(BYTE_TO_SYMBOL[0x20], "Ġ"); // space
  assert.equal(BYTE_TO_SYMBOL[0x0a], "Ċ"); // newline
  assert.equal(BYTE_TO_SYMBOL[0x00], "Ā");
});

test("generation is deterministic: same parameters give byte-identical files", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tok-gen-"));
  await writeTokenizerJson(join(dir, "a.json"), { vocabSize: 1024 });
  await writeTokenizerJson(join(dir, "b.json"), { vocabSize: 1024 });
  const a = readFileSync(join(dir, "a.json"));
  assert.equal(sha(a), sha(readFileSync(join(dir, "b.json"))));
  assert.equal(a.toString("utf8"), generateTokenizerJson({ vocabSize: 1024 }));
  assert.notEqual(sha(a), sha(generateTokenizerJson({ vocabSize: 4096 })));
});

test("the generated file has CLIP's vocab layout and structure", () => {
  for (const vocabSize of [1024, 4096]) {
    const doc = JSON.parse(generateTokenizerJson({ vocabSize }));
    const vocab = doc.model.vocab as Record<string, number>;
    const ids = Object.values(vocab).sort((x, y) => x - y);
    assert.equal(ids.length, vocabSize - 2, "all non-special ids are distinct");
    assert.deepEqual(ids, [...ids.keys()], "ids are contiguous from 0");
    assert.equal(vocab["!"], 0);
    assert.equal(vocab["!</w>"], 256);
    assert.deepEqual(
      doc.added_tokens.map((t: { id: number; content: string }) => [t.content, t.id]),
      [
        ["<|startoftext|>", vocabSize - 2],
        ["<|endoftext|>", vocabSize - 1],
      ],
    );
    assert.equal(doc.model.end_of_word_suffix, "</w>");
    assert.equal(doc.post_processor.type, "RobertaProcessing");
    for (const m of doc.model.merges as string[]) {
      const [l, r] = m.split(" ") as [string, string];
      assert.ok(l in vocab && r in vocab && l + r in vocab, `merge ${m} is closed over the vocab`);
    }
  }
});

test("trainer learns frequent words first and ties break by code-unit order", () => {
  const merges = trainBpe("ab ab ab cd cd cd", 3);
  assert.deepEqual(merges, [
    ["a", "b</w>"],
    ["c", "d</w>"],
  ]);
  assert.deepEqual(trainBpe("the the the cat", 1), [["h", "e</w>"]]); // tie with "t h": "h" < "t"
});

test("vocab size outside the allowed range is rejected", () => {
  assert.throws(
    () => generateTokenizerJson({ vocabSize: 100 }),
    (e) => e instanceof LavieError,
  );
  assert.throws(() => generateTokenizerJson({ vocabSize: 1024.5 }), /vocabSize/);
});
