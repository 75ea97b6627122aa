/**
 * CLIP-style text tokenization.
 *
 * @example
 * import { loadTokenizer, writeTokenizerJson, TOKENIZER_VOCAB_SIZES } from "./models/tokenizer/index.ts";
 * await writeTokenizerJson("out/tiny/tokenizer.json", { vocabSize: TOKENIZER_VOCAB_SIZES.tiny });
 * const tok = await loadTokenizer("out/tiny/tokenizer.json");
 * const { ids, truncated, tokenCount } = tok.encode("a cat playing piano"); // ids: BigInt64Array(77)
 * const uncond = tok.encode(""); // [bos, eos, eos, ...] for classifier-free guidance
 */
export { BYTE_SYMBOLS, BYTE_TO_SYMBOL, toByteSymbols } from "./bytes.ts";
export { BUILTIN_CORPUS } from "./corpus.ts";
export type { GenerateOptions } from "./generate.ts";
export {
  BOS_TOKEN,
  CLIP_SPLIT_PATTERN,
  END_OF_WORD,
  EOS_TOKEN,
  generateTokenizerJson,
  MAX_VOCAB_SIZE,
  MIN_VOCAB_SIZE,
  preTokenize,
  TOKENIZER_VOCAB_SIZES,
  trainBpe,
  writeTokenizerJson,
} from "./generate.ts";
export type { ClipTokenizer, EncodedPrompt, LoadTokenizerOptions } from "./tokenizer.ts";
export { CONTEXT_LENGTH, loadTokenizer } from "./tokenizer.ts";
