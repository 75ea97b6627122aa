/**
 * Our CLIP tokenizer against transformers 4.28.1's slow CLIPTokenizer (no ftfy), the one LaVie's
 * pipelines call: test/golden/tokenizer/clip_tokenizer.json, written by
 * python/lavie_ref/golden/tokenizer.py for ~35 prompts under both pad conventions.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { bundledClipVocabFiles } from "./clip_vocab.ts";
import { clipTokenizerJsonFromFiles } from "./convert.ts";
import { loadTokenizer } from "./tokenizer.ts";

interface Golden {
  max_length: number;
  conventions: Record<
    string,
    { special_tokens_map: object; tokenizer_config: object; pad_token: string; pad_id: number }
  >;
  cases: Array<{ prompt: string; text_tokens: Record<string, number>; ids: Record<string, number[]> }>;
}

const golden = JSON.parse(
  readFileSync(new URL("../../test/golden/tokenizer/clip_tokenizer.json", import.meta.url), "utf8"),
) as Golden;
const files = await bundledClipVocabFiles();
const dir = mkdtempSync(join(tmpdir(), "tok-golden-"));

test("the golden file covers both pad conventions and enough prompts", () => {
  assert.deepEqual(Object.keys(golden.conventions).sort(), ["bang_pad", "eos_pad"]);
  assert.equal(golden.conventions.eos_pad!.pad_id, 49407);
  assert.equal(golden.conventions.bang_pad!.pad_id, 0);
  assert.ok(golden.cases.length >= 30);
  assert.ok(
    golden.cases.some((c) => c.text_tokens.eos_pad! > golden.max_length - 2),
    "a truncated case",
  );
});

for (const [name, convention] of Object.entries(golden.conventions)) {
  test(`${name}: every golden prompt gives transformers' ids, token count and truncation flag`, async () => {
    const path = join(dir, `${name}.json`);
    const text = clipTokenizerJsonFromFiles({
      ...files,
      specialTokensMap: JSON.stringify(convention.special_tokens_map),
      tokenizerConfig: JSON.stringify(convention.tokenizer_config),
    });
    writeFileSync(path, text);
    const tok = await loadTokenizer(path, { contextLength: golden.max_length });
    assert.deepEqual(
      [tok.vocabSize, tok.bosId, tok.eosId, tok.padId],
      [49408, 49406, 49407, convention.pad_id],
    );
    for (const c of golden.cases) {
      const got = tok.encode(c.prompt);
      const label = JSON.stringify(c.prompt);
      assert.deepEqual(Array.from(got.ids, Number), c.ids[name], label);
      assert.equal(got.tokenCount, c.text_tokens[name], label);
      assert.equal(got.truncated, c.text_tokens[name]! > golden.max_length - 2, label);
    }
  });
}
