"""Position-keyed Gaussian noise, as lavie-serve draws it (core/noise/keyed.ts), in numpy.

Every value is a function of (seed, stage, step, flat row-major index in the full tensor) only:
  1. h = FNV-1a-64 over UTF-8(stage) || 0x00 || u64_le(step)
  2. Philox4x32-10 key (seed mod 2^32, seed // 2^32)
  3. element i: counter (j mod 2^32, j // 2^32, h mod 2^32, h // 2^32) with j = i // 4
  4. Box-Muller in float64 on the pair p = (i mod 4) // 2 of the block's four words (a, b):
       r = sqrt(-2 ln((a + 1) 2^-32)), theta = 2 pi (b 2^-32); r cos(theta) for even i, r sin(theta) for odd;
     rounded to float32.
The logarithm, sine and cosine are taken from Python's math module (the C library, < 1 ulp like V8's
fdlibm ports) rather than numpy's vectorised SIMD versions, whose float64 errors can reach a few ulp.

    x = keyed_noise(seed=7, stage="base/init", step=0, shape=(1, 4, 4, 8, 8))  # float32 array
"""

from __future__ import annotations

import math

import numpy as np

_MASK32 = 0xFFFFFFFF
_MASK64 = (1 << 64) - 1
_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
ROUNDS = 10


def stage_step_hash(stage: str, step: int) -> int:
    """FNV-1a-64 of UTF-8(stage) || 0x00 || u64_le(step)."""
    if not isinstance(step, int) or step < 0 or step > _MASK64:
        raise ValueError(f"step must be a non-negative 64-bit integer, got {step!r}")
    data = stage.encode("utf-8") + b"\x00" + step.to_bytes(8, "little")
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & _MASK64
    return h


def philox4x32(counters: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """Philox4x32-10 of each row of `counters` ([n, 4] uint32) under the 64-bit key (k0, k1) -> [n, 4] uint32."""
    c = [counters[:, w].astype(np.uint64) for w in range(4)]
    k0, k1 = key[0] & _MASK32, key[1] & _MASK32
    mask = np.uint64(_MASK32)
    shift = np.uint64(32)
    for _ in range(ROUNDS):
        p0 = c[0] * np.uint64(_M0)  # both factors < 2^32: the 64-bit product is exact
        p1 = c[2] * np.uint64(_M1)
        hi0, lo0 = p0 >> shift, p0 & mask
        hi1, lo1 = p1 >> shift, p1 & mask
        c = [hi1 ^ c[1] ^ np.uint64(k0), lo1, hi0 ^ c[3] ^ np.uint64(k1), lo0]
        k0 = (k0 + _W0) & _MASK32
        k1 = (k1 + _W1) & _MASK32
    return np.stack(c, axis=1).astype(np.uint32)


def _check_seed(seed: int) -> int:
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= _MASK64:
        raise ValueError(f"seed must be an integer in [0, 2^64), got {seed!r}")
    return seed


def keyed_normals(seed: int, stage: str, step: int, start: int, count: int) -> np.ndarray:
    """The normals of flat indices [start, start + count) of any tensor keyed (seed, stage, step), float32."""
    seed = _check_seed(seed)
    if start < 0 or count < 0 or start + count > 2**53:
        raise ValueError(f"flat range [{start}, {start + count}) must lie in [0, 2^53)")
    out = np.empty(count, dtype=np.float32)
    if count == 0:
        return out
    h = stage_step_hash(stage, step)
    j = np.arange(start // 4, (start + count - 1) // 4 + 1, dtype=np.uint64)
    counters = np.stack(
        [
            j & np.uint64(_MASK32),
            j >> np.uint64(32),
            np.full_like(j, h & _MASK32),
            np.full_like(j, h >> 32),
        ],
        axis=1,
    )
    words = philox4x32(counters, (seed & _MASK32, seed >> 32)).tolist()
    inv32 = 2.0**-32
    two_pi = 2 * math.pi
    values: list[float] = []
    for x0, x1, x2, x3 in words:
        r0 = math.sqrt(-2 * math.log((x0 + 1) * inv32))
        t0 = two_pi * (x1 * inv32)
        r1 = math.sqrt(-2 * math.log((x2 + 1) * inv32))
        t1 = two_pi * (x3 * inv32)
        values += (r0 * math.cos(t0), r0 * math.sin(t0), r1 * math.cos(t1), r1 * math.sin(t1))
    offset = start - 4 * (start // 4)
    out[:] = np.asarray(values[offset : offset + count], dtype=np.float64).astype(np.float32)
    return out


def keyed_noise(seed: int, stage: str, step: int, shape: tuple[int, ...]) -> np.ndarray:
    """The noise of a whole tensor of `shape` (float32, row-major flat index = position)."""
    if any(not isinstance(n, int) or n < 0 for n in shape):
        raise ValueError(f"shape must hold non-negative integers, got {shape!r}")
    return keyed_normals(seed, stage, step, 0, math.prod(shape)).reshape(shape)
