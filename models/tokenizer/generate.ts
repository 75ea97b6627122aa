/**
 * Generates a small, deterministic CLIP-format tokenizer.json for the project's own presets.
 *
 * Same structure as openai/clip-vit-large-patch14's tokenizer.json: BPE with "</w>" end-of-word suffix,
 * NFC + whitespace-collapse + lowercase normalizer, CLIP Split regex then ByteLevel pre-tokenizer,
 * RobertaProcessing (bos/eos) post-processor, ByteLevel decoder. Vocab layout is CLIP's too:
 * 256 byte symbols, their 256 "</w>" forms, one entry per merge, then <|startoftext|>, <|endoftext|>.
 * Same parameters -> byte-identical output.
 */
import { writeFile } from "node:fs/promises";
import { invalidArgument } from "../../core/errors.ts";
import { BYTE_SYMBOLS, toByteSymbols } from "./bytes.ts";
import { BUILTIN_CORPUS } from "./corpus.ts";

export const BOS_TOKEN = "<|startoftext|>";
export const EOS_TOKEN = "<|endoftext|>";
export const END_OF_WORD = "</w>";
/** CLIP's pre-tokenizer pattern (HF tokenizers' CLIPConverter), in tokenizer.json's Oniguruma syntax. */
export const CLIP_SPLIT_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";
/** 256 byte symbols + 256 "</w>" forms + bos + eos. */
export const MIN_VOCAB_SIZE = 514;
export const MAX_VOCAB_SIZE = 65536;
/** Vocab sizes of the project's presets; "clip" is the real CLIP ViT-L/14 size. */
export const TOKENIZER_VOCAB_SIZES = { tiny: 1024, small: 4096, clip: 49408 } as const;

const SPLIT_RE = /'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+/gu;

/** CLIP normalization + pre-tokenization of training text: words as byte-symbol strings. */
export function preTokenize(text: string): string[] {
  const normalized = text.normalize("NFC").replace(/\s+/gu, " ").toLowerCase();
  return (normalized.match(SPLIT_RE) ?? []).map(toByteSymbols);
}

/**
 * Learns up to `maxMerges` merges from `corpus` by classic BPE (most frequent adjacent pair, ties broken
 * by code-unit order of "left right"), stopping early when every word is a single symbol.
 */
export function trainBpe(corpus: string, maxMerges: number): Array<[string, string]> {
  const counts = new Map<string, number>();
  for (const w of preTokenize(corpus)) counts.set(w, (counts.get(w) ?? 0) + 1);
  const words = [...counts.keys()].sort().map((w) => {
    const symbols = Array.from(w);
    symbols[symbols.length - 1] += END_OF_WORD;
    return { symbols, count: counts.get(w)! };
  });
  const merges: Array<[string, string]> = [];
  while (merges.length < maxMerges) {
    const pairs = new Map<string, number>();
    for (const { symbols, count } of words) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = `${symbols[i]} ${symbols[i + 1]}`;
        pairs.set(key, (pairs.get(key) ?? 0) + count);
      }
    }
    let best: string | undefined;
    let bestCount = 0;
    for (const [key, c] of pairs) {
      if (c > bestCount || (c === bestCount && best !== undefined && key < best)) {
        best = key;
        bestCount = c;
      }
    }
    if (best === undefined) break;
    const [left, right] = best.split(" ") as [string, string];
    merges.push([left, right]);
    for (const word of words) {
      const s = word.symbols;
      const out: string[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === left && s[i + 1] === right) {
          out.push(left + right);
          i++;
        } else out.push(s[i]!);
      }
      word.symbols = out;
    }
  }
  return merges;
}

/** Merges and vocab for a given vocab size: corpus merges first, then deterministic letter fillers. */
function buildVocab(vocabSize: number, corpus: string): { vocab: string[]; merges: string[] } {
  const vocab = [...BYTE_SYMBOLS, ...BYTE_SYMBOLS.map((s) => s + END_OF_WORD)];
  const known = new Set(vocab);
  const merges: string[] = [];
  const target = vocabSize - 2;
  const add = (left: string, right: string) => {
    merges.push(`${left} ${right}`);
    const merged = left + right;
    if (!known.has(merged)) {
      known.add(merged);
      vocab.push(merged);
    }
  };
  for (const [left, right] of trainBpe(corpus, target - vocab.length)) {
    if (vocab.length >= target) break;
    add(left, right);
  }
  // The corpus is exhausted: extend plain-letter tokens by one letter (word-inner and word-final forms).
  const letters = Array.from("abcdefghijklmnopqrstuvwxyz");
  for (let i = 0; vocab.length < target && i < vocab.length; i++) {
    const tok = vocab[i]!;
    if (!/^[a-z]+$/.test(tok)) continue;
    for (const c of letters) {
      for (const right of [c, c + END_OF_WORD]) {
        if (vocab.length < target && !known.has(tok + right)) add(tok, right);
      }
    }
  }
  return { vocab, merges };
}

export interface GenerateOptions {
  /** Total vocabulary size including bos/eos (tiny preset 1024, small 4096, real CLIP 49408). */
  vocabSize: number;
  /** Training text; defaults to the built-in English corpus. */
  corpus?: string;
}

/** The tokenizer.json text (deterministic: same options -> same bytes). */
export function generateTokenizerJson(opts: GenerateOptions): string {
  const { vocabSize } = opts;
  if (!Number.isInteger(vocabSize) || vocabSize < MIN_VOCAB_SIZE || vocabSize > MAX_VOCAB_SIZE) {
    throw invalidArgument(
      "vocabSize",
      `must be an integer in [${MIN_VOCAB_SIZE}, ${MAX_VOCAB_SIZE}], got ${vocabSize}`,
    );
  }
  const { vocab, merges } = buildVocab(vocabSize, opts.corpus ?? BUILTIN_CORPUS);
  const bosId = vocab.length;
  const eosId = bosId + 1;
  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: true,
    special: true,
  });
  const doc = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [special(bosId, BOS_TOKEN), special(eosId, EOS_TOKEN)],
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
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
      ],
    },
    post_processor: {
      type: "RobertaProcessing",
      sep: [EOS_TOKEN, eosId],
      cls: [BOS_TOKEN, bosId],
      trim_offsets: false,
      add_prefix_space: false,
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: EOS_TOKEN,
      continuing_subword_prefix: "",
      end_of_word_suffix: END_OF_WORD,
      fuse_unk: false,
      byte_fallback: false,
      vocab: "@VOCAB@",
      merges,
    },
  };
  // Object key order would move integer-like tokens ("0".."9") first; write the vocab in id order by hand.
  const vocabJson = `{\n${vocab.map((t, id) => `      ${JSON.stringify(t)}: ${id}`).join(",\n")}\n    }`;
  return `${JSON.stringify(doc, null, 2).replace('"@VOCAB@"', () => vocabJson)}\n`;
}

/** Writes generateTokenizerJson(opts) to `path`. */
export async function writeTokenizerJson(path: string, opts: GenerateOptions): Promise<void> {
  await writeFile(path, generateTokenizerJson(opts));
}
