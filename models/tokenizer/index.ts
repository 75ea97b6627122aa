/**
 * CLIP-style text tokenization.
 *
 * @example
 * import { loadTokenizer, writeTokenizerJson, TOKENIZER_VOCAB_SIZES } from "./models/tokenizer/index.ts";
 * await writeTokenizerJson("out/tiny/tokenizer.json", { vocabSize: TOKENIZER_VOCAB_SIZES.tiny });
 * const tok = await loadTokenizer("out/tiny/tokenizer.json");
 * const { ids, truncated, tokenCount } = tok.encode("a cat playing piano"); // ids: BigInt64Array(77)
 * const uncond = tok.encode(""); // [bos, eos, pad, ...] for classifier-free guidance
 *
 * Published checkpoints: a HuggingFace CLIPTokenizer folder -> tokenizer.json text for a model directory
 * const text = await tokenizerJsonFromHfFolder("stable-diffusion-x4-upscaler/tokenizer");
 * // from file contents: clipTokenizerJsonFromFiles({ vocabJson, mergesTxt, specialTokensMap, tokenizerConfig })
 * // the real CLIP vocabulary, no download: await bundledClipVocabFiles() -> { vocabJson, mergesTxt }
 */
export { BYTE_SYMBOLS, BYTE_TO_SYMBOL, toByteSymbols } from "./bytes.ts";
export type { ClipVocabFiles } from "./clip_vocab.ts";
export {
  bundledClipVocabFiles,
  CLIP_BPE_FILE,
  CLIP_MERGE_COUNT,
  CLIP_VOCAB_SIZE,
  clipVocabFilesFromBpe,
  readClipBpe,
} from "./clip_vocab.ts";
export type { ClipTokenizerFileNames, ClipTokenizerFiles } from "./convert.ts";
export { clipTokenizerJsonFromFiles } from "./convert.ts";
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
export { HF_TOKENIZER_FILES, tokenizerJsonFromHfFolder } from "./hf_folder.ts";
export type { ClipTokenizer, EncodedPrompt, LoadTokenizerOptions } from "./tokenizer.ts";
export { CONTEXT_LENGTH, loadTokenizer } from "./tokenizer.ts";
