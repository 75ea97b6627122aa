import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { LavieError } from "../../core/errors.ts";
import { bundledClipVocabFiles } from "./clip_vocab.ts";
import { clipTokenizerJsonFromFiles } from "./convert.ts";
import { tokenizerJsonFromHfFolder } from "./hf_folder.ts";
import { loadTokenizer } from "./tokenizer.ts";

const root = mkdtempSync(join(tmpdir(), "tok-hf-"));
const SD2_MAP = JSON.stringify({ bos_token: { content: "<|startoftext|>" }, pad_token: "!" });
const SD2_CONFIG = JSON.stringify({
  pad_token: "<|endoftext|>",
  model_max_length: 77,
  tokenizer_class: "CLIPTokenizer",
});

/** Writes a CLIPTokenizer folder; `undefined` leaves a file out. */
function folder(name: string, files: Record<string, string | undefined>): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  for (const [file, text] of Object.entries(files))
    if (text !== undefined) writeFileSync(join(dir, file), text);
  return dir;
}

async function load(name: string, tokenizerJson: string, contextLength?: number) {
  const path = join(root, `${name}.tokenizer.json`);
  writeFileSync(path, tokenizerJson);
  return loadTokenizer(path, contextLength === undefined ? {} : { contextLength });
}

// A miniature CLIP-format folder: "cat" merges to one token, "!" exists with and without "</w>".
const MINI_VOCAB = JSON.stringify({
  a: 0,
  c: 1,
  t: 2,
  "a</w>": 3,
  "t</w>": 4,
  "c</w>": 5,
  ca: 6,
  "cat</w>": 7,
  "at</w>": 8,
  "!": 9,
  "!</w>": 10,
  "<|startoftext|>": 11,
  "<|endoftext|>": 12,
});
const MINI_MERGES = "#version: 0.2\nc a\na t</w>\nca t</w>\n";
const mini = { vocabJson: MINI_VOCAB, mergesTxt: MINI_MERGES };

test("real CLIP vocabulary, SD1 and SD2-style folders: 'a photo of a cat' and its padding", async () => {
  const real = await bundledClipVocabFiles();
  const files = { "vocab.json": real.vocabJson, "merges.txt": real.mergesTxt };
  const sd1 = await tokenizerJsonFromHfFolder(
    folder("sd1", { ...files, "special_tokens_map.json": JSON.stringify({ pad_token: "<|endoftext|>" }) }),
  );
  const sd2 = await tokenizerJsonFromHfFolder(
    folder("sd2", { ...files, "special_tokens_map.json": SD2_MAP, "tokenizer_config.json": SD2_CONFIG }),
  );
  const head = [49406, 320, 1125, 539, 320, 2368, 49407];
  for (const [name, text, pad] of [
    ["sd1", sd1, 49407],
    ["sd2", sd2, 0],
  ] as const) {
    const tok = await load(name, text);
    assert.equal(tok.padId, pad);
    assert.deepEqual(Array.from(tok.encode("a photo of a cat").ids, Number), [
      ...head,
      ...Array(77 - head.length).fill(pad),
    ]);
    assert.equal(tok.decode(tok.encode("A  Photo of a CAT!").ids), "a photo of a cat!");
  }
  const doc = JSON.parse(sd2);
  assert.deepEqual(doc.padding, {
    strategy: { Fixed: 77 },
    direction: "Right",
    pad_to_multiple_of: null,
    pad_id: 0,
    pad_token: "!",
    pad_type_id: 0,
  });
  assert.deepEqual(
    doc.added_tokens.map((t: { id: number; content: string; normalized: boolean }) => [
      t.id,
      t.content,
      t.normalized,
    ]),
    [
      [0, "!", false],
      [49406, "<|startoftext|>", false],
      [49407, "<|endoftext|>", false],
    ],
  );
  assert.equal(
    clipTokenizerJsonFromFiles({ ...real, specialTokensMap: SD2_MAP, tokenizerConfig: SD2_CONFIG }),
    sd2,
    "deterministic, and the folder reader adds nothing",
  );
});

test("pad token: special_tokens_map.json over tokenizer_config.json over CLIPTokenizer's default (eos)", async () => {
  const cases: Array<[string, { specialTokensMap?: string; tokenizerConfig?: string }, number]> = [
    ["map over config", { specialTokensMap: SD2_MAP, tokenizerConfig: SD2_CONFIG }, 9],
    ["config only", { tokenizerConfig: JSON.stringify({ pad_token: { content: "!" } }) }, 9],
    ["neither", {}, 12],
  ];
  for (const [label, extra, padId] of cases) {
    const tok = await load("pad", clipTokenizerJsonFromFiles({ ...mini, ...extra }), 8);
    assert.equal(tok.padId, padId, label);
    // With pad "!", a "!" in the text is the special token itself (id 9), as in transformers.
    const bang = padId === 9 ? 9 : 10;
    assert.deepEqual(
      Array.from(tok.encode("Cat! at").ids, Number),
      [11, 7, bang, 8, 12, padId, padId, padId],
      label,
    );
  }
});

test("the text is cleaned like transformers' BasicTokenizer (no ftfy)", async () => {
  const tok = await load("clean", clipTokenizerJsonFromFiles(mini), 10);
  // Accents stripped, punctuation split per character, controls and zero-width joiners dropped.
  assert.deepEqual(
    Array.from(tok.encode("ÇÀT\u200d\u0000 à!!\tc").ids, Number),
    [11, 7, 3, 10, 10, 5, 12, 12, 12, 12],
  );
});

test("missing or garbled folder files -> failed_precondition naming the file", async () => {
  const good = { "vocab.json": MINI_VOCAB, "merges.txt": MINI_MERGES };
  const cases: Array<[string, Record<string, string | undefined>, string, RegExp]> = [
    ["no-vocab", { ...good, "vocab.json": undefined }, "vocab.json", /does not exist/],
    ["bad-json", { ...good, "vocab.json": '{"a": 0,' }, "vocab.json", /not valid JSON/],
    [
      "bad-id",
      { ...good, "vocab.json": '{"a": 0, "b": 0}' },
      "vocab.json",
      /id 0 is given to both "a" and "b"/,
    ],
    ["gap", { ...good, "vocab.json": '{"a": 0, "b": 2}' }, "vocab.json", /id 1 is missing/],
    ["no-header", { ...good, "merges.txt": "c a\n" }, "merges.txt", /#version: 0\.2/],
    [
      "bad-merge",
      { ...good, "merges.txt": "#version: 0.2\nc x\n" },
      "merges.txt",
      /line 2.*"x" is not in the vocabulary/,
    ],
    ["map-json", { ...good, "special_tokens_map.json": "[1]" }, "special_tokens_map.json", /JSON object/],
    [
      "pad-missing",
      { ...good, "special_tokens_map.json": '{"pad_token": "<pad>"}' },
      "vocab.json",
      /"<pad>" \(pad_token of .*special_tokens_map\.json\)/,
    ],
    [
      "bad-class",
      { ...good, "tokenizer_config.json": '{"tokenizer_class": "BertTokenizer"}' },
      "tokenizer_config.json",
      /only CLIPTokenizer/,
    ],
    [
      "bad-token",
      { ...good, "tokenizer_config.json": '{"bos_token": 5}' },
      "tokenizer_config.json",
      /bos_token must be/,
    ],
    ["added", { ...good, "added_tokens.json": '{"<x>": 13}' }, "added_tokens.json", /not supported/],
  ];
  for (const [name, files, file, why] of cases) {
    const dir = folder(name, files);
    await assert.rejects(tokenizerJsonFromHfFolder(dir), (e: unknown) => {
      assert.ok(e instanceof LavieError, name);
      assert.equal(e.code, "failed_precondition", name);
      assert.ok(e.message.includes(join(dir, file)), `${name}: ${e.message}`);
      assert.match(e.message, why, name);
      return true;
    });
  }
  const gone = join(root, "gone");
  rmSync(gone, { recursive: true, force: true });
  await assert.rejects(tokenizerJsonFromHfFolder(gone), /tokenizer folder .*gone: does not exist/);
  assert.ok(
    (await tokenizerJsonFromHfFolder(folder("empty-added", { ...good, "added_tokens.json": "{}" }))).length >
      0,
  );
});
