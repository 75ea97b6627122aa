/**
 * CLIP / GPT-2 byte-level alphabet: every byte maps to one printable unicode character, so any UTF-8
 * string becomes a string of "byte symbols" without spaces or control characters.
 * Pure, no I/O.
 */

const isPrintable = (b: number): boolean =>
  (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);

/** byte value -> symbol: printable bytes map to themselves, the others to U+0100.. in byte order. */
export const BYTE_TO_SYMBOL: readonly string[] = (() => {
  const table: string[] = [];
  let shifted = 0;
  for (let b = 0; b < 256; b++) table.push(String.fromCodePoint(isPrintable(b) ? b : 256 + shifted++));
  return table;
})();

/** The 256 byte symbols in CLIP's vocabulary order (printable bytes first, then the shifted ones). */
export const BYTE_SYMBOLS: readonly string[] = [
  ...BYTE_TO_SYMBOL.filter((_, b) => isPrintable(b)),
  ...BYTE_TO_SYMBOL.filter((_, b) => !isPrintable(b)),
];

const encoder = new TextEncoder();

/** UTF-8 encodes `text` and maps each byte to its symbol ("a b" -> "aĠb"). */
export function toByteSymbols(text: string): string {
  let out = "";
  for (const b of encoder.encode(text)) out += BYTE_TO_SYMBOL[b]!;
  return out;
}
