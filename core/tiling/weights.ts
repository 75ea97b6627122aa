/**
 * Feather weights for blending overlapping windows along one axis.
 *
 * Window i with left overlap L (shared with window i-1) and right overlap R (shared with window i+1)
 * gets, at offset t in [0, size):
 *   ramp-in  (t + 1) / (L + 1)          for t < L
 *   ramp-out (size - t) / (R + 1)       for t >= size - R
 *   1                                    elsewhere (min of the two where they meet).
 * The first window has no ramp-in and the last no ramp-out, so weights are never zero and are 1 at the
 * tensor's outer borders. Where exactly two windows overlap (overlap <= size / 2), their weights sum to
 * 1 at every position, and for N-D tiles (product of per-axis weights) the sum over tiles is 1 too.
 */
import type { Window } from "./windows.ts";

export function featherWeights(ws: readonly Window[], i: number): Float32Array {
  const w = ws[i];
  if (!w) throw new RangeError(`featherWeights: no window ${i}`);
  const prev = ws[i - 1];
  const next = ws[i + 1];
  const left = prev ? Math.max(0, Math.min(prev.start + prev.size - w.start, w.size)) : 0;
  const right = next ? Math.max(0, Math.min(w.start + w.size - next.start, w.size)) : 0;
  const out = new Float32Array(w.size);
  for (let t = 0; t < w.size; t++) {
    const a = t < left ? (t + 1) / (left + 1) : 1;
    const b = t >= w.size - right ? (w.size - t) / (right + 1) : 1;
    out[t] = Math.min(a, b);
  }
  return out;
}
