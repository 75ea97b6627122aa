/**
 * Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11; the Random123
 * reference), in plain 32-bit integer arithmetic.
 *
 * Math.imul gives the low word of a 32x32 multiply; the high word is assembled from 16-bit halves
 * (a = aH*2^16 + aL, M likewise), whose partial products are all < 2^32 and so exact:
 *   mid = (aL*ML >>> 16) + (aL*MH & 0xffff) + (aH*ML & 0xffff)
 *   hi  = aH*MH + (aL*MH >>> 16) + (aH*ML >>> 16) + (mid >>> 16)
 * Words are carried as int32 or uint32 interchangeably (only the low 32 bits matter).
 */

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;
const M0L = M0 & 0xffff;
const M0H = M0 >>> 16;
const M1L = M1 & 0xffff;
const M1H = M1 >>> 16;

/** Number of rounds: Philox4x32-10. */
export const PHILOX_ROUNDS = 10;

/**
 * The 10 round keys for a 64-bit key (k0, k1): [k0_r0, k1_r0, k0_r1, k1_r1, ...] with
 * k0_{r+1} = k0_r + 0x9E3779B9 and k1_{r+1} = k1_r + 0xBB67AE85 (mod 2^32).
 */
export function philoxRoundKeys(k0: number, k1: number): Uint32Array {
  const rk = new Uint32Array(2 * PHILOX_ROUNDS);
  let a = k0 >>> 0;
  let b = k1 >>> 0;
  for (let r = 0; r < PHILOX_ROUNDS; r++) {
    rk[2 * r] = a;
    rk[2 * r + 1] = b;
    a = (a + W0) >>> 0;
    b = (b + W1) >>> 0;
  }
  return rk;
}

/**
 * One Philox4x32-10 block: encrypts counter (c0, c1, c2, c3) under the round keys `rk` (from
 * philoxRoundKeys) and writes the four output words into out[0..3].
 */
export function philoxBlock(
  c0: number,
  c1: number,
  c2: number,
  c3: number,
  rk: Uint32Array,
  out: Uint32Array,
): void {
  for (let r = 0; r < 2 * PHILOX_ROUNDS; r += 2) {
    // hi/lo words of c0 * M0 and c2 * M1 from 16-bit halves (every partial product < 2^32).
    const aL = c0 & 0xffff;
    const aH = c0 >>> 16;
    const a1 = aL * M0H;
    const a2 = aH * M0L;
    const aMid = ((aL * M0L) >>> 16) + (a1 & 0xffff) + (a2 & 0xffff);
    const hi0 = aH * M0H + (a1 >>> 16) + (a2 >>> 16) + (aMid >>> 16);
    const lo0 = Math.imul(c0, M0);
    const bL = c2 & 0xffff;
    const bH = c2 >>> 16;
    const b1 = bL * M1H;
    const b2 = bH * M1L;
    const bMid = ((bL * M1L) >>> 16) + (b1 & 0xffff) + (b2 & 0xffff);
    const hi1 = bH * M1H + (b1 >>> 16) + (b2 >>> 16) + (bMid >>> 16);
    const lo1 = Math.imul(c2, M1);
    const n0 = hi1 ^ c1 ^ rk[r]!;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ rk[r + 1]!;
    c3 = lo0;
    c0 = n0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

/** Convenience form for tests and one-off use: philox4x32([c0,c1,c2,c3], [k0,k1]). */
export function philox4x32(
  counter: readonly [number, number, number, number],
  key: readonly [number, number],
): Uint32Array {
  const out = new Uint32Array(4);
  philoxBlock(
    counter[0] >>> 0,
    counter[1] >>> 0,
    counter[2] >>> 0,
    counter[3] >>> 0,
    philoxRoundKeys(key[0], key[1]),
    out,
  );
  return out;
}
