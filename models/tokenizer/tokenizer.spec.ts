import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { LavieError } from "../../core/errors.ts";
import { CLIP_SPLIT_PATTERN, writeTokenizerJson } from "./generate.ts";
import { loadTokenizer } from "./tokenizer.ts";

const dir = mkdtempSync(join(tmpdir(), "tok-"));
const tinyPath = join(dir, "tiny.json");
await writeTokenizerJson(tinyPath, { vocabSize: 1024 });

/** A hand-written miniature CLIP-format tokenizer.json. */
const mini = {
  version: "1.0",
  added_tokens: [
    { id: 11, content: "<|startoftext|>", special: true, normalized: true, lstrip: false, rstrip: false },
    { id: 12, content: "<|endoftext|>", special: true, normalized: true, lstrip: false, rstrip: false },
  ],
  normalizer: {
    type: "Sequence",
    normalizers: [
      { type: "NFC" },
      { type: "Replace", pattern: { Regex: "\\s+" }, content: " " },
      { type: "Lowercase" },
    ],
  },
  pre_tokenizer: {
    type: "Sequence",
    pretokenizers: [
      { type: "Split", pattern: { Regex: CLIP_SPLIT_PATTERN }, behavior: "Removed", invert: true },
      { type: "ByteLevel", add_prefix_space: false, trim_offsets: true },
    ],
  },
  post_processor: { type: "RobertaProcessing", sep: ["<|endoftext|>", 12], cls: ["<|startoftext|>", 11] },
  decoder: { type: "ByteLevel" },
  model: {
    type: "BPE",
    unk_token: "<|endoftext|>",
    continuing_subword_prefix: "",
    end_of_word_suffix: "</w>",
    vocab: {
      a: 0,
      c: 1,
      t: 2,
      "a</w>": 3,
      "t</w>": 4,
      "c</w>": 5,
      ca: 6,
      "cat</w>": 7,
      "at</w>": 8,
      ",": 9,
      ",</w>": 10,
    },
    merges: ["c a", "a t</w>", "ca t</w>"],
  },
};

test("encode: bos + tokens + eos, padded with eos to 77, ids < vocab size", async () => {
  const tok = await loadTokenizer(tinyPath);
  assert.equal(tok.vocabSize, 1024);
  assert.equal(tok.bosId, 1022);
  assert.equal(tok.eosId, 1023);
  const { ids, truncated, tokenCount } = tok.encode("a photo of a cat walking on the beach");
  assert.equal(ids.length, 77);
  assert.equal(truncated, false);
  assert.ok(tokenCount >= 8);
  assert.equal(ids[0], 1022n);
  assert.equal(ids[tokenCount + 1], 1023n);
  for (let i = tokenCount + 1; i < 77; i++) assert.equal(ids[i], 1023n, `position ${i} is eos padding`);
  for (const id of ids) assert.ok(id >= 0n && id < 1024n);
  assert.ok(ids.slice(1, tokenCount + 1).every((id) => id !== 1023n && id !== 1022n));
});

test("empty prompt is [bos, eos, eos...] (the CFG unconditional prompt)", async () => {
  const tok = await loadTokenizer(tinyPath);
  const { ids, truncated, tokenCount } = tok.encode("");
  assert.deepEqual([ids[0], ids[1], ids[76]], [1022n, 1023n, 1023n]);
  assert.equal(tokenCount, 0);
  assert.equal(truncated, false);
  assert.equal(tok.decode(ids), "");
});

test("round trip: decode(encode(text)) recovers the lowercased, whitespace-collapsed text", async () => {
  const tok = await loadTokenizer(tinyPath);
  const cases: Array<[string, string]> = [
    ["A Photo of a CAT   walking on the beach", "a photo of a cat walking on the beach"],
    ["  Astronaut\nriding a horse, cinematic lighting!", "astronaut riding a horse, cinematic lighting!"],
    ["zyzzyva café 日本", "zyzzyva café 日本"], // unseen words and non-ASCII go through byte symbols
  ];
  for (const [input, expected] of cases) assert.equal(tok.decode(tok.encode(input).ids), expected);
});

test("long prompt is truncated to 75 text tokens, keeps eos last and reports it", async () => {
  const tok = await loadTokenizer(tinyPath);
  const long = Array.from({ length: 120 }, (_, i) => `word${i % 10}`).join(" ");
  const { ids, truncated, tokenCount } = tok.encode(long);
  assert.equal(truncated, true);
  assert.ok(tokenCount > 75);
  assert.equal(ids.length, 77);
  assert.equal(ids[0], 1022n);
  assert.equal(ids[76], 1023n);
  assert.ok(ids.slice(1, 76).every((id) => id !== 1023n));
  const exact = tok.encode(Array.from({ length: 75 }, () => "a").join(" "));
  assert.deepEqual([exact.tokenCount, exact.truncated, exact.ids[76]], [75, false, 1023n]);
});

test("a hand-written miniature CLIP-format tokenizer.json gives the expected ids", async () => {
  const path = join(dir, "mini.json");
  writeFileSync(path, JSON.stringify(mini));
  const tok = await loadTokenizer(path, { contextLength: 8 });
  // "cat": c a t</w> -> "c a" (rank 0) -> ca t</w> -> "ca t</w>" (rank 2) -> cat</w>
  assert.deepEqual(Array.from(tok.encode("A  CAT, at").ids), [11n, 3n, 7n, 10n, 8n, 12n, 12n, 12n]);
  assert.deepEqual(Array.from(tok.encode("tac").ids.slice(0, 5)), [11n, 2n, 0n, 5n, 12n]);
  assert.equal(tok.decode([11, 3, 7, 10, 8, 12]), "a cat, at");
});

test("padding.pad_token picks the pad id; a pad_id or special token the vocabulary contradicts is refused", async () => {
  const padded = { ...mini, padding: { pad_token: "a</w>", pad_id: 3 } };
  const path = join(dir, "padded.json");
  writeFileSync(path, JSON.stringify(padded));
  const tok = await loadTokenizer(path, { contextLength: 6 });
  assert.equal(tok.padId, 3);
  assert.deepEqual(Array.from(tok.encode("cat").ids), [11n, 7n, 12n, 3n, 3n, 3n]);
  assert.equal(tok.decode(tok.encode("cat a").ids), "cat a", "padding after the last eos is dropped");
  for (const [name, doc, why] of [
    ["wrong-id", { ...mini, padding: { pad_token: "a</w>", pad_id: 4 } }, /has id 3, the file claims 4/],
    [
      "unknown-pad",
      { ...mini, padding: { pad_token: "<pad>", pad_id: 13 } },
      /"<pad>" is not in its vocabulary/,
    ],
    [
      "wrong-bos",
      { ...mini, post_processor: { ...mini.post_processor, cls: ["<|startoftext|>", 5] } },
      /bos token "<\|startoftext\|>" has id 11, the file claims 5/,
    ],
  ] as const) {
    const bad = join(dir, `${name}.json`);
    writeFileSync(bad, JSON.stringify(doc));
    await assert.rejects(loadTokenizer(bad), (e: unknown) => {
      assert.ok(e instanceof LavieError && e.code === "failed_precondition" && e.message.includes(bad));
      assert.match(e.message, why);
      return true;
    });
  }
});

test("missing or corrupt tokenizer.json -> failed_precondition naming the file", async () => {
  const missing = join(dir, "nope", "tokenizer.json");
  const corrupt = join(dir, "corrupt.json");
  writeFileSync(corrupt, '{"model": {"type": "BPE", "vocab": ');
  const notBpe = join(dir, "notbpe.json");
  writeFileSync(notBpe, JSON.stringify({ model: { type: "WordPiece" } }));
  for (const [path, why] of [
    [missing, /does not exist/],
    [corrupt, /not valid JSON/],
    [notBpe, /not a BPE tokenizer/],
  ] as const) {
    await assert.rejects(loadTokenizer(path), (e: unknown) => {
      assert.ok(e instanceof LavieError);
      assert.equal(e.code, "failed_precondition");
      assert.ok(e.message.includes(path), e.message);
      assert.match(e.message, why);
      return true;
    });
  }
});
