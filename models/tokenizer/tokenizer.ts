/**
 * CLIP text tokenization over a HuggingFace tokenizer.json, through @huggingface/tokenizers.
 * Output matches what LaVie's text encoder expects: bos + tokens + eos, 77 positions, padded with eos,
 * no attention mask.
 */
import { readFile } from "node:fs/promises";
import { Tokenizer } from "@huggingface/tokenizers";
import { LavieError } from "../../core/errors.ts";
import { BOS_TOKEN, EOS_TOKEN } from "./generate.ts";

/** CLIP's context length (positions of the text encoder). */
export const CONTEXT_LENGTH = 77;

export interface EncodedPrompt {
  /** bos, up to contextLength-2 text tokens, eos, then eos padding; always contextLength long. */
  ids: BigInt64Array;
  /** True when text tokens were dropped to fit. */
  truncated: boolean;
  /** Number of text tokens before truncation (bos/eos/padding not counted). */
  tokenCount: number;
}

export interface ClipTokenizer {
  readonly path: string;
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly contextLength: number;
  /** Text tokens that fit (contextLength - 2). */
  readonly maxTextTokens: number;
  encode(text: string): EncodedPrompt;
  /** Text for ids; bos/eos/padding are dropped, words are separated by single spaces. */
  decode(ids: ArrayLike<number | bigint>): string;
}

export interface LoadTokenizerOptions {
  /** Defaults to 77 (CLIP). */
  contextLength?: number;
}

function precondition(path: string, what: string, cause?: unknown): LavieError {
  return new LavieError("failed_precondition", `tokenizer file ${path}: ${what}`, { field: path, cause });
}

/** Loads a CLIP-format tokenizer.json. Missing, unreadable or malformed files -> failed_precondition. */
export async function loadTokenizer(path: string, opts: LoadTokenizerOptions = {}): Promise<ClipTokenizer> {
  const contextLength = opts.contextLength ?? CONTEXT_LENGTH;
  if (!Number.isInteger(contextLength) || contextLength < 2) {
    throw new LavieError("invalid_argument", `contextLength: must be an integer >= 2, got ${contextLength}`, {
      field: "contextLength",
    });
  }
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw precondition(path, code === "ENOENT" ? "does not exist" : `cannot be read (${String(err)})`, err);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw precondition(path, `is not valid JSON (${(err as Error).message})`, err);
  }
  const model = (json as { model?: { type?: unknown } } | null)?.model;
  if (typeof json !== "object" || json === null || model?.type !== "BPE") {
    throw precondition(path, 'is not a BPE tokenizer.json (expected "model": { "type": "BPE", ... })');
  }
  let tok: Tokenizer;
  try {
    tok = new Tokenizer(json, { clean_up_tokenization_spaces: true });
  } catch (err) {
    throw precondition(path, `is not a usable tokenizer.json (${(err as Error).message})`, err);
  }
  const bosId = tok.token_to_id(BOS_TOKEN);
  const eosId = tok.token_to_id(EOS_TOKEN);
  if (bosId === undefined || eosId === undefined) {
    throw precondition(path, `lacks the special tokens ${BOS_TOKEN} and ${EOS_TOKEN}`);
  }
  let vocabSize = 0;
  for (const id of tok.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);
  const specials = new Set([bosId, eosId]);
  const maxTextTokens = contextLength - 2;

  return {
    path,
    vocabSize,
    bosId,
    eosId,
    contextLength,
    maxTextTokens,
    encode(prompt: string): EncodedPrompt {
      const textIds = tok.encode(prompt, { add_special_tokens: false }).ids;
      const ids = new BigInt64Array(contextLength).fill(BigInt(eosId));
      ids[0] = BigInt(bosId);
      const kept = Math.min(textIds.length, maxTextTokens);
      for (let i = 0; i < kept; i++) ids[i + 1] = BigInt(textIds[i]!);
      // ids[kept + 1] is already eos (the terminator), the rest is eos padding.
      return { ids, truncated: textIds.length > maxTextTokens, tokenCount: textIds.length };
    },
    decode(ids: ArrayLike<number | bigint>): string {
      const content = Array.from(ids, Number).filter((id) => !specials.has(id));
      if (content.length === 0) return "";
      return tok.decode(content).replace(/\s+/g, " ").trim();
    },
  };
}
