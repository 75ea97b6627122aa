/**
 * tokenizer.json from the files of a HuggingFace CLIPTokenizer folder (vocab.json, merges.txt, and
 * optionally special_tokens_map.json and tokenizer_config.json), loadable by @huggingface/tokenizers and
 * giving the ids of transformers 4.28.1's slow CLIPTokenizer, the one LaVie's pipelines call.
 *
 * LaVie's environment has no ftfy, so that tokenizer cleans text with transformers' BasicTokenizer
 * (do_lower_case=True) before CLIP's regex and BPE. Step by step, and where each step lives here:
 *   1. drop NUL, U+FFFD and every category-C character except \t \n \r; whitespace becomes " "
 *      -> normalizer Replace x2
 *   2. lowercase, then strip accents: NFD and drop nonspacing marks (Mn)  -> Lowercase, NFD, Replace
 *   3. split on whitespace; every punctuation character (ASCII punctuation or Unicode P*) becomes a word
 *      of its own                                                          -> BertPreTokenizer
 *   4. every CJK ideograph becomes a word of its own (transformers pads them with spaces before step 2;
 *      NFD maps ideographs to ideographs, so doing it after is the same)   -> Split, Isolated
 *   5. CLIP's regex: runs of letters, single digits, runs of other symbols -> Split, invert
 *   6. UTF-8 bytes -> byte symbols, BPE with "</w>" on each word's last symbol -> ByteLevel, BPE
 * Special tokens (bos, eos, unk, pad and any other named in the config) are cut out of the raw text
 * before all of this, case-sensitively, as transformers' no-split tokens are: hence "normalized": false.
 * With the SD2-style pad token "!" every "!" in a prompt therefore becomes id 0, as in transformers.
 *
 * Differences from the tokenizer.json that CLIPTokenizerFast writes (NFC + whitespace collapse +
 * lowercase; the behaviour of the slow tokenizer *with* ftfy, minus ftfy's mojibake/HTML repair):
 * here accents are stripped ("café" -> "cafe"), punctuation splits per character ("don't" ->
 * don ' t, "..." -> . . .), CJK ideographs are separate words, and format characters (e.g. the
 * zero-width joiner in emoji sequences) and nonspacing marks (e.g. the emoji variation selector
 * U+FE0F) are dropped. Known residual differences from transformers: Unicode tables are Node's, not
 * Python's (a character Python's older tables call unassigned is dropped there and kept here), and a
 * stretch of text between special tokens that normalizes to exactly a special token's text (say a
 * lone "<|ENDOFTEXT|>") is taken as that token by @huggingface/tokenizers.
 */
import { LavieError } from "../../core/errors.ts";
import { MERGES_HEADER } from "./clip_vocab.ts";
import { BOS_TOKEN, CLIP_SPLIT_PATTERN, END_OF_WORD, EOS_TOKEN } from "./generate.ts";
import { CONTEXT_LENGTH } from "./tokenizer.ts";

/** Merges transformers' CLIPTokenizer reads at most (merges.txt lines 1..48894). */
const MAX_MERGES = 49152 - 256 - 2;
/** CJK ideograph blocks of transformers' BasicTokenizer._is_chinese_char (Oniguruma syntax). */
const CJK_PATTERN =
  "[\\x{4E00}-\\x{9FFF}\\x{3400}-\\x{4DBF}\\x{20000}-\\x{2A6DF}\\x{2A700}-\\x{2B73F}" +
  "\\x{2B740}-\\x{2B81F}\\x{2B820}-\\x{2CEAF}\\x{F900}-\\x{FAFF}\\x{2F800}-\\x{2FA1F}]";
/** Special-token attributes of transformers' tokenizers, in its order. */
const SPECIAL_KEYS = [
  "bos_token",
  "eos_token",
  "unk_token",
  "sep_token",
  "pad_token",
  "cls_token",
  "mask_token",
] as const;
type SpecialKey = (typeof SPECIAL_KEYS)[number];
/** CLIPTokenizer's constructor defaults ("hack to enable padding": pad = eos). */
const CLIP_DEFAULTS: Partial<Record<SpecialKey, string>> = {
  bos_token: BOS_TOKEN,
  eos_token: EOS_TOKEN,
  unk_token: EOS_TOKEN,
  pad_token: EOS_TOKEN,
};

/** File contents (text) of a HuggingFace CLIPTokenizer folder. */
export interface ClipTokenizerFiles {
  vocabJson: string;
  mergesTxt: string;
  specialTokensMap?: string;
  tokenizerConfig?: string;
}

/** How errors name each file (default: its usual file name; a folder reader passes full paths). */
export interface ClipTokenizerFileNames {
  vocabJson: string;
  mergesTxt: string;
  specialTokensMap: string;
  tokenizerConfig: string;
}

const DEFAULT_NAMES: ClipTokenizerFileNames = {
  vocabJson: "vocab.json",
  mergesTxt: "merges.txt",
  specialTokensMap: "special_tokens_map.json",
  tokenizerConfig: "tokenizer_config.json",
};

function bad(file: string, what: string): LavieError {
  return new LavieError("failed_precondition", `tokenizer file ${file}: ${what}`, { field: file });
}

function parseObject(text: string, file: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw bad(file, `is not valid JSON (${(err as Error).message})`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw bad(file, "must hold a JSON object");
  return v as Record<string, unknown>;
}

/** vocab.json -> tokens by id; ids must be distinct and cover 0..n-1. */
function parseVocab(text: string, file: string): string[] {
  const obj = parseObject(text, file);
  const byId: string[] = [];
  for (const [token, id] of Object.entries(obj)) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0) {
      throw bad(file, `token ${JSON.stringify(token)} has id ${JSON.stringify(id)}; ids are integers >= 0`);
    }
    if (byId[id] !== undefined) {
      throw bad(file, `id ${id} is given to both ${JSON.stringify(byId[id])} and ${JSON.stringify(token)}`);
    }
    byId[id] = token;
  }
  if (byId.length === 0) throw bad(file, "holds no tokens");
  const count = Object.keys(obj).length;
  if (byId.length !== count) {
    let hole = 0;
    while (byId[hole] !== undefined) hole++;
    throw bad(file, `ids must run from 0 to ${count - 1} without gaps; id ${hole} is missing`);
  }
  return byId;
}

/** merges.txt -> "left right" merges in rank order, as CLIPTokenizer reads them. */
function parseMerges(text: string, file: string, vocab: ReadonlySet<string>): string[] {
  const lines = text.trim().split("\n");
  if (!lines[0]?.startsWith("#version")) {
    throw bad(file, `must start with a "${MERGES_HEADER}" header line, found ${JSON.stringify(lines[0])}`);
  }
  const merges: string[] = [];
  const seen = new Set<string>();
  for (const [i, line] of lines.slice(1, MAX_MERGES + 1).entries()) {
    const parts = line.trim().split(/\s+/);
    const where = `line ${i + 2} (${JSON.stringify(line)})`;
    if (parts.length !== 2) throw bad(file, `${where} is not a merge "left right"`);
    const [left, right] = parts as [string, string];
    for (const t of [left, right, left + right]) {
      if (!vocab.has(t)) throw bad(file, `${where}: ${JSON.stringify(t)} is not in the vocabulary`);
    }
    const merge = `${left} ${right}`;
    if (seen.has(merge)) throw bad(file, `${where} repeats an earlier merge`);
    seen.add(merge);
    merges.push(merge);
  }
  if (merges.length === 0) throw bad(file, "holds no merges");
  return merges;
}

/** A special-token value: "text" or { "content": "text", ... } (AddedToken). */
function tokenText(value: unknown, file: string, key: string): string {
  const content =
    typeof value === "object" && value !== null ? (value as { content?: unknown }).content : value;
  if (typeof content !== "string" || content === "") {
    throw bad(file, `${key} must be a token text or {"content": text}, got ${JSON.stringify(value)}`);
  }
  return content;
}

interface SpecialTokens {
  byKey: Partial<Record<SpecialKey, string>>;
  /** Every special token's text (the no-split tokens of transformers) -> where it was named. */
  all: Map<string, string>;
}

/** The special tokens as transformers resolves them: special_tokens_map.json over tokenizer_config.json. */
function resolveSpecials(
  map: Record<string, unknown>,
  config: Record<string, unknown>,
  names: ClipTokenizerFileNames,
): SpecialTokens {
  const source = (key: string): [unknown, string] | undefined => {
    if (key in map) return [map[key], names.specialTokensMap];
    if (key in config) return [config[key], names.tokenizerConfig];
    return undefined;
  };
  const byKey: Partial<Record<SpecialKey, string>> = {};
  const all = new Map<string, string>();
  const add = (text: string, where: string) => {
    if (!all.has(text)) all.set(text, where);
  };
  for (const key of SPECIAL_KEYS) {
    const found = source(key);
    if (found === undefined) {
      const fallback = CLIP_DEFAULTS[key];
      if (fallback !== undefined) add((byKey[key] = fallback), `${key} (CLIPTokenizer's default)`);
    } else if (found[0] !== null || CLIP_DEFAULTS[key] !== undefined) {
      add((byKey[key] = tokenText(found[0], found[1], key)), `${key} of ${found[1]}`);
    }
  }
  const extra = source("additional_special_tokens");
  if (extra !== undefined && extra[0] !== null) {
    if (!Array.isArray(extra[0])) throw bad(extra[1], "additional_special_tokens must be a list");
    for (const v of extra[0]) {
      add(tokenText(v, extra[1], "additional_special_tokens"), `additional_special_tokens of ${extra[1]}`);
    }
  }
  return { byKey, all };
}

/** Checks tokenizer_config.json fields that matter; returns the model_max_length (77 when absent). */
function checkConfig(config: Record<string, unknown>, file: string): number {
  const cls = config.tokenizer_class;
  if (cls !== undefined && cls !== "CLIPTokenizer" && cls !== "CLIPTokenizerFast") {
    throw bad(file, `tokenizer_class is ${JSON.stringify(cls)}; only CLIPTokenizer folders are supported`);
  }
  const max = config.model_max_length ?? CONTEXT_LENGTH;
  if (typeof max !== "number" || !Number.isInteger(max) || max < 2) {
    throw bad(file, `model_max_length must be an integer >= 2, got ${JSON.stringify(max)}`);
  }
  return max;
}

/**
 * The tokenizer.json text (deterministic: same files -> same bytes) for a CLIPTokenizer folder's files.
 * Missing or malformed content -> LavieError failed_precondition naming the file.
 */
export function clipTokenizerJsonFromFiles(
  files: ClipTokenizerFiles,
  names: ClipTokenizerFileNames = DEFAULT_NAMES,
): string {
  const vocab = parseVocab(files.vocabJson, names.vocabJson);
  const ids = new Map(vocab.map((t, id) => [t, id]));
  const merges = parseMerges(files.mergesTxt, names.mergesTxt, new Set(vocab));
  const map =
    files.specialTokensMap === undefined ? {} : parseObject(files.specialTokensMap, names.specialTokensMap);
  const config =
    files.tokenizerConfig === undefined ? {} : parseObject(files.tokenizerConfig, names.tokenizerConfig);
  const maxLength = checkConfig(config, names.tokenizerConfig);
  const specials = resolveSpecials(map, config, names);
  for (const [t, where] of specials.all) {
    if (!ids.has(t)) {
      throw bad(
        names.vocabJson,
        `lacks the special token ${JSON.stringify(t)} (${where}); transformers would give it a new id past the vocabulary, which the text encoder has no embedding for`,
      );
    }
  }
  const idOf = (key: SpecialKey) => ids.get(specials.byKey[key]!)!;
  const [bos, eos, unk, pad] = [
    specials.byKey.bos_token!,
    specials.byKey.eos_token!,
    specials.byKey.unk_token!,
    specials.byKey.pad_token!,
  ];
  const addedTokens = [...specials.all.keys()]
    .map((content) => ({
      id: ids.get(content)!,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    }))
    .sort((a, b) => a.id - b.id);
  const regex = (Regex: string) => ({ Regex });
  const doc = {
    version: "1.0",
    truncation: { direction: "Right", max_length: maxLength, strategy: "LongestFirst", stride: 0 },
    padding: {
      strategy: { Fixed: maxLength },
      direction: "Right",
      pad_to_multiple_of: null,
      pad_id: idOf("pad_token"),
      pad_type_id: 0,
      pad_token: pad,
    },
    added_tokens: addedTokens,
    normalizer: {
      type: "Sequence",
      normalizers: [
        { type: "Replace", pattern: regex("[\\t\\n\\r\\p{Zs}]"), content: " " },
        { type: "Replace", pattern: regex("[\\p{C}\\x{FFFD}]"), content: "" },
        { type: "Lowercase" },
        { type: "NFD" },
        { type: "Replace", pattern: regex("\\p{Mn}"), content: "" },
      ],
    },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "BertPreTokenizer" },
        { type: "Split", pattern: regex(CJK_PATTERN), behavior: "Isolated", invert: false },
        { type: "Split", pattern: regex(CLIP_SPLIT_PATTERN), behavior: "Removed", invert: true },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: "RobertaProcessing",
      sep: [eos, idOf("eos_token")],
      cls: [bos, idOf("bos_token")],
      trim_offsets: false,
      add_prefix_space: false,
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: unk,
      continuing_subword_prefix: "",
      end_of_word_suffix: END_OF_WORD,
      fuse_unk: false,
      byte_fallback: false,
      vocab: "@VOCAB@",
      merges,
    },
  };
  // Written in id order by hand: object key order would move integer-like tokens ("0".."9") first.
  const vocabJson = `{\n${vocab.map((t, id) => `      ${JSON.stringify(t)}: ${id}`).join(",\n")}\n    }`;
  return `${JSON.stringify(doc, null, 2).replace('"@VOCAB@"', () => vocabJson)}\n`;
}
