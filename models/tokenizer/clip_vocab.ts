/**
 * The real CLIP vocabulary, built from OpenAI's BPE file (bundled in ./data, MIT licence) into the
 * vocab.json + merges.txt pair that HuggingFace CLIPTokenizer folders ship.
 *
 * CLIP's layout (49,408 ids): the 256 byte symbols in bytes_to_unicode order, the same 256 with the
 * "</w>" end-of-word suffix, one token per merge (its two halves joined) for the first 48,894 merges
 * of the BPE file (its lines 1..48894; line 0 is a header), then <|startoftext|> and <|endoftext|>.
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { LavieError } from "../../core/errors.ts";
import { BYTE_SYMBOLS } from "./bytes.ts";
import { BOS_TOKEN, END_OF_WORD, EOS_TOKEN } from "./generate.ts";

/** OpenAI CLIP's BPE file as bundled with this package. */
export const CLIP_BPE_FILE = fileURLToPath(new URL("./data/bpe_simple_vocab_16e6.txt.gz", import.meta.url));
/** Merges CLIP uses: 49152 - 256 - 2 (the BPE file holds more lines than that). */
export const CLIP_MERGE_COUNT = 48894;
/** 256 + 256 + 48894 + 2. */
export const CLIP_VOCAB_SIZE = 49408;
/** First line of a HuggingFace merges.txt. */
export const MERGES_HEADER = "#version: 0.2";

export interface ClipVocabFiles {
  /** vocab.json text: token -> id, written in id order. */
  vocabJson: string;
  /** merges.txt text: header line, then one "left right" merge per line in rank order. */
  mergesTxt: string;
}

function dataLoss(file: string, what: string): LavieError {
  return new LavieError("data_loss", `CLIP BPE file ${file}: ${what}`, { field: file });
}

/**
 * vocab.json + merges.txt from the text of a CLIP BPE file (bpe_simple_vocab_16e6.txt, unzipped).
 * `file` only names the source in errors.
 */
export function clipVocabFilesFromBpe(bpeText: string, file = "bpe_simple_vocab_16e6.txt"): ClipVocabFiles {
  const lines = bpeText.split("\n");
  if (lines.length < CLIP_MERGE_COUNT + 1) {
    throw dataLoss(
      file,
      `has ${lines.length} lines; CLIP needs a header line and ${CLIP_MERGE_COUNT} merges`,
    );
  }
  const merges = lines.slice(1, CLIP_MERGE_COUNT + 1);
  const vocab = [...BYTE_SYMBOLS, ...BYTE_SYMBOLS.map((s) => s + END_OF_WORD)];
  for (const [i, line] of merges.entries()) {
    const parts = line.split(" ");
    if (parts.length !== 2 || parts[0] === "" || parts[1] === "") {
      throw dataLoss(file, `line ${i + 1} is ${JSON.stringify(line)}, not a merge "left right"`);
    }
    vocab.push(parts[0]! + parts[1]!);
  }
  vocab.push(BOS_TOKEN, EOS_TOKEN);
  if (new Set(vocab).size !== CLIP_VOCAB_SIZE) {
    throw dataLoss(file, `its merges do not give ${CLIP_VOCAB_SIZE} distinct tokens`);
  }
  // By hand rather than JSON.stringify(object): integer-like keys ("0".."9") would move to the front.
  const vocabJson = `{${vocab.map((t, id) => `${JSON.stringify(t)}: ${id}`).join(", ")}}\n`;
  return { vocabJson, mergesTxt: `${MERGES_HEADER}\n${merges.join("\n")}\n` };
}

/** The unzipped text of a gzipped CLIP BPE file (default: the bundled one). */
export async function readClipBpe(path: string = CLIP_BPE_FILE): Promise<string> {
  let zipped: Buffer;
  try {
    zipped = await readFile(path);
  } catch (err) {
    throw new LavieError("failed_precondition", `CLIP BPE file ${path}: cannot be read (${String(err)})`, {
      field: path,
      cause: err,
    });
  }
  try {
    return gunzipSync(zipped).toString("utf8");
  } catch (err) {
    throw dataLoss(path, `is not a gzip file (${(err as Error).message})`);
  }
}

/** vocab.json + merges.txt of the real CLIP tokenizer, from the bundled BPE file (no download). */
export async function bundledClipVocabFiles(): Promise<ClipVocabFiles> {
  return clipVocabFilesFromBpe(await readClipBpe(), CLIP_BPE_FILE);
}
