/**
 * A HuggingFace CLIPTokenizer folder (a checkpoint's tokenizer/ subfolder) -> tokenizer.json text for a
 * model directory. Reads vocab.json and merges.txt (required), special_tokens_map.json and
 * tokenizer_config.json (optional, as for transformers: CLIPTokenizer's defaults apply when absent).
 */
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { LavieError } from "../../core/errors.ts";
import { type ClipTokenizerFileNames, clipTokenizerJsonFromFiles } from "./convert.ts";

/** File names in a CLIPTokenizer folder. */
export const HF_TOKENIZER_FILES = {
  vocabJson: "vocab.json",
  mergesTxt: "merges.txt",
  specialTokensMap: "special_tokens_map.json",
  tokenizerConfig: "tokenizer_config.json",
  addedTokens: "added_tokens.json",
} as const;

async function readText(path: string, required: boolean): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" && !required) return undefined;
    const why = code === "ENOENT" ? "does not exist" : `cannot be read (${String(err)})`;
    throw new LavieError("failed_precondition", `tokenizer file ${path}: ${why}`, {
      field: path,
      cause: err,
    });
  }
}

/**
 * Validates the CLIPTokenizer folder `dir` and returns the tokenizer.json text reproducing
 * transformers' CLIPTokenizer on it (see convert.ts). Missing or malformed files -> LavieError
 * failed_precondition naming the file. An added_tokens.json with entries is refused: those tokens would
 * get ids past the vocabulary, which CLIP text encoders have no embeddings for.
 */
export async function tokenizerJsonFromHfFolder(dir: string): Promise<string> {
  const names: ClipTokenizerFileNames = {
    vocabJson: join(dir, HF_TOKENIZER_FILES.vocabJson),
    mergesTxt: join(dir, HF_TOKENIZER_FILES.mergesTxt),
    specialTokensMap: join(dir, HF_TOKENIZER_FILES.specialTokensMap),
    tokenizerConfig: join(dir, HF_TOKENIZER_FILES.tokenizerConfig),
  };
  const isDir = await stat(dir).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!isDir) {
    throw new LavieError(
      "failed_precondition",
      `tokenizer folder ${dir}: does not exist or is not a directory`,
      {
        field: dir,
      },
    );
  }
  const addedPath = join(dir, HF_TOKENIZER_FILES.addedTokens);
  const added = await readText(addedPath, false);
  if (added !== undefined) {
    let entries: number;
    try {
      entries = Object.keys(JSON.parse(added) ?? {}).length;
    } catch (err) {
      throw new LavieError("failed_precondition", `tokenizer file ${addedPath}: is not valid JSON`, {
        field: addedPath,
        cause: err,
      });
    }
    if (entries > 0) {
      throw new LavieError(
        "failed_precondition",
        `tokenizer file ${addedPath}: added tokens are not supported (they would get ids past the CLIP vocabulary)`,
        { field: addedPath },
      );
    }
  }
  const [vocabJson, mergesTxt, specialTokensMap, tokenizerConfig] = await Promise.all([
    readText(names.vocabJson, true),
    readText(names.mergesTxt, true),
    readText(names.specialTokensMap, false),
    readText(names.tokenizerConfig, false),
  ]);
  return clipTokenizerJsonFromFiles(
    { vocabJson: vocabJson!, mergesTxt: mergesTxt!, specialTokensMap, tokenizerConfig },
    names,
  );
}
