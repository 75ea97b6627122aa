/**
 * CLIP text tokenization over a HuggingFace tokenizer.json, through @huggingface/tokenizers.
 * Output matches what LaVie's text encoders get: bos + tokens + eos, 77 positions, then padding with the
 * file's pad token (its "padding.pad_token"; eos when the file names none, as SD1 folders do; "!", id 0,
 * for SD2-style folders such as the x4 upscaler's), no attention mask.
 */
import { readFile } from "node:fs/promises";
import { Tokenizer } from "@huggingface/tokenizers";
import { LavieError } from "../../core/errors.ts";
import { BOS_TOKEN, EOS_TOKEN } from "./generate.ts";

/** CLIP's context length (positions of the text encoder). */
export const CONTEXT_LENGTH = 77;

export interface EncodedPrompt {
  /** bos, up to contextLength-2 text tokens, eos, then padding (padId); always contextLength long. */
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
  /** Id filling the positions after eos. */
  readonly padId: number;
  readonly contextLength: number;
  /** Text tokens that fit (contextLength - 2). */
  readonly maxTextTokens: number;
  encode(text: string): EncodedPrompt;
  /** Text for ids; bos, eos and the padding after the last eos are dropped, words separated by single spaces. */
  decode(ids: ArrayLike<number | bigint>): string;
}

export interface LoadTokenizerOptions {
  /** Defaults to 77 (CLIP). */
  contextLength?: number;
}

function precondition(path: string, what: string, cause?: unknown): LavieError {
  return new LavieError("failed_precondition", `tokenizer file ${path}: ${what}`, { field: path, cause });
}

interface TokenizerJson {
  post_processor?: { type?: unknown; cls?: unknown; sep?: unknown } | null;
  padding?: { pad_token?: unknown; pad_id?: unknown } | null;
}

/**
 * bos/eos from a RobertaProcessing post-processor (the names <|startoftext|>/<|endoftext|> otherwise),
 * pad from "padding" (eos when null). Each must be a token of the file with the id it claims.
 */
function specialIds(
  path: string,
  json: TokenizerJson,
  tok: Tokenizer,
): { bosId: number; eosId: number; padId: number } {
  const idOf = (token: unknown, claimed: unknown, what: string): number => {
    const id = typeof token === "string" ? tok.token_to_id(token) : undefined;
    if (id === undefined)
      throw precondition(path, `${what} ${JSON.stringify(token)} is not in its vocabulary`);
    if (claimed !== undefined && claimed !== id) {
      throw precondition(
        path,
        `${what} ${JSON.stringify(token)} has id ${id}, the file claims ${JSON.stringify(claimed)}`,
      );
    }
    return id;
  };
  const post = json.post_processor;
  const fromPost = (v: unknown, fallback: string): [unknown, unknown] =>
    post?.type === "RobertaProcessing" && Array.isArray(v) ? [v[0], v[1]] : [fallback, undefined];
  const [bos, bosClaim] = fromPost(post?.cls, BOS_TOKEN);
  const [eos, eosClaim] = fromPost(post?.sep, EOS_TOKEN);
  const bosId = idOf(bos, bosClaim, "bos token");
  const eosId = idOf(eos, eosClaim, "eos token");
  const pad = json.padding;
  const padId = pad == null ? eosId : idOf(pad.pad_token, pad.pad_id, "padding.pad_token");
  return { bosId, eosId, padId };
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
  const { bosId, eosId, padId } = specialIds(path, json as TokenizerJson, tok);
  let vocabSize = 0;
  for (const id of tok.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);
  const maxTextTokens = contextLength - 2;

  return {
    path,
    vocabSize,
    bosId,
    eosId,
    padId,
    contextLength,
    maxTextTokens,
    encode(prompt: string): EncodedPrompt {
      const textIds = tok.encode(prompt, { add_special_tokens: false }).ids;
      const ids = new BigInt64Array(contextLength).fill(BigInt(padId));
      ids[0] = BigInt(bosId);
      const kept = Math.min(textIds.length, maxTextTokens);
      for (let i = 0; i < kept; i++) ids[i + 1] = BigInt(textIds[i]!);
      ids[kept + 1] = BigInt(eosId);
      return { ids, truncated: textIds.length > maxTextTokens, tokenCount: textIds.length };
    },
    decode(ids: ArrayLike<number | bigint>): string {
      let all = Array.from(ids, Number);
      const lastEos = all.lastIndexOf(eosId);
      if (lastEos >= 0) all = all.slice(0, lastEos);
      const content = all.filter((id) => id !== bosId && id !== eosId);
      if (content.length === 0) return "";
      return tok.decode(content).replace(/\s+/g, " ").trim();
    },
  };
}
