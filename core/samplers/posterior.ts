/**
 * Sampling from a VAE's diagonal Gaussian posterior, as diffusers' DiagonalGaussianDistribution.sample()
 * does (LaVie's interpolation stage conditions on `vae.encode(x).latent_dist.sample() * 0.18215`):
 *
 *   z = mean + exp(logvar / 2) * noise,   logvar clamped to [-30, 20]
 *
 * The noise is passed in (position-keyed by the caller), so any split of the frames draws the same z.
 */
import { invalidArgument } from "../errors.ts";

export const LOGVAR_MIN = -30;
export const LOGVAR_MAX = 20;

/**
 * moments: the encoder's latent_parameters [n, 2c, h, w] (mean channels, then log-variance channels);
 * noise: [n, c, h, w] standard normal. Returns scale * z as [n, c, h, w].
 */
export function samplePosterior(
  moments: Float32Array,
  shape: readonly number[],
  noise: Float32Array,
  scale: number,
): Float32Array {
  const [n, c2, h, w] = shape as [number, number, number, number];
  if (shape.length !== 4 || c2 % 2 !== 0 || moments.length !== n * c2 * h * w)
    throw invalidArgument("latent_parameters", `expected [N, 2*C, h, w] moments, got shape [${shape}]`);
  const block = (c2 / 2) * h * w;
  if (noise.length !== n * block)
    throw invalidArgument("noise", `expected ${n * block} values for [${n}, ${c2 / 2}, ${h}, ${w}]`);
  const out = new Float32Array(n * block);
  for (let i = 0; i < n; i++) {
    const m = 2 * i * block;
    for (let k = 0; k < block; k++) {
      const lv = Math.min(LOGVAR_MAX, Math.max(LOGVAR_MIN, moments[m + block + k]!));
      out[i * block + k] = scale * (moments[m + k]! + Math.exp(0.5 * lv) * noise[i * block + k]!);
    }
  }
  return out;
}
