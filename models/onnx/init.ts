/**
 * Seeded weight generation for project-built models. A parameter's values depend only on the graph
 * seed and the parameter's full name (FNV-1a over both seeds an xoshiro128** stream), so the same
 * preset and seed give identical weights in any build order, on any machine.
 */
export interface Rng {
  /** Next uint32. */
  next(): number;
}

function fnv1a(seed: number, text: string): number[] {
  // Four independent 32-bit FNV-1a hashes (different offsets) give xoshiro's 128-bit state.
  const offsets = [0x811c9dc5, 0x9e3779b9, 0x85ebca6b, 0xc2b2ae35];
  return offsets.map((off) => {
    let h = (off ^ seed) >>> 0;
    for (let i = 0; i < text.length; i++) {
      h ^= text.charCodeAt(i);
      h = Math.imul(h, 0x01000193) >>> 0;
    }
    // Final avalanche (murmur3 fmix32) so similar names give unrelated streams.
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b) >>> 0;
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35) >>> 0;
    h ^= h >>> 16;
    return h >>> 0;
  });
}

export function seedFromName(seed: number, name: string): Rng {
  let [a, b, c, d] = fnv1a(seed >>> 0, name) as [number, number, number, number];
  if ((a | b | c | d) === 0) a = 1;
  return {
    next(): number {
      const result = Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0;
      const t = b << 9;
      c ^= a;
      d ^= b;
      b ^= c;
      a ^= d;
      c ^= t;
      d = rotl(d, 11);
      return result;
    },
  };
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

const INV_2_32 = 1 / 4294967296;

export function uniformFill(out: Float32Array, rng: Rng, bound: number): void {
  for (let i = 0; i < out.length; i++) out[i] = (rng.next() * INV_2_32 * 2 - 1) * bound;
}

export function normalFill(out: Float32Array, rng: Rng, mean: number, std: number): void {
  for (let i = 0; i < out.length; i += 2) {
    const u1 = (rng.next() + 1) * INV_2_32; // (0, 1]
    const u2 = rng.next() * INV_2_32;
    const r = Math.sqrt(-2 * Math.log(u1)) * std;
    out[i] = mean + r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < out.length) out[i + 1] = mean + r * Math.sin(2 * Math.PI * u2);
  }
}
