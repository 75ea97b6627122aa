/**
 * Per-frame segmentation for the detector: background estimate, palette labelling and connected
 * regions with soft (anti-aliased) coverage.
 *
 * Background: the world's backgrounds are plain or linear ramps along one axis, so it is modelled as
 * constant along rows, bg(i, j) = row(i), the median of row i over the clip (all columns of 4 frames
 * spread over the clip), or along columns, bg(i, j) = col(j), whichever fits the first frame better.
 * Objects cover less than half of a row or column, so the medians skip them (a still object too).
 * Labels: each pixel p gets the palette colour c explaining p - bg best as alpha * (c - bg) (least
 * residual), with alpha its coverage; pixels differing from the background by less than FOREGROUND
 * are background. Regions: 8-connected pixels of one colour with alpha >= 0.5, grown by GROW pixels to
 * take in the anti-aliased rim; a region's coverage map is alpha for its colour.
 */
import { COLOUR_RGB, COLOURS, type Rgb } from "./scene.ts";

/** A clip in [0, 1]: plane(f, k) is channel k of frame f, H*W values. */
export interface UnitClip {
  readonly frames: number;
  readonly height: number;
  readonly width: number;
  plane(f: number, k: number): Float32Array;
}

/** Least |p - bg| (RGB in [0, 1]) of a foreground pixel. */
const FOREGROUND = 0.2;
/** Frames the background medians are taken over (spread over the clip). */
const BACKGROUND_FRAMES = 4;
/** Pixels a region is grown by: its anti-aliased (or blurred) rim. */
const GROW = 2;
/** Palette colours closer than this to the background are not looked for there. */
const MIN_CONTRAST = 0.3;

export interface Region {
  colour: number; // index into COLOURS
  /** The region's bounding box: rows [i0, i1), columns [j0, j1). */
  box: { i0: number; i1: number; j0: number; j1: number };
  /** Coverage over the box, row-major (0 outside the region). */
  alpha: Float32Array;
  /** Sum of coverage (pixels), coverage-weighted centroid (pixel units, pixel centres at +0.5). */
  area: number;
  cx: number;
  cy: number;
  /** Mean residual of its core pixels relative to the colour's contrast (0 = exactly the palette colour). */
  residual: number;
}

/** Median by selection (Hoare's quickselect on a copy): O(n), unlike sorting. */
function median(xs: Float32Array): number {
  const a = xs.slice();
  const n = a.length;
  const hi = kth(a, n >> 1);
  return n % 2 ? hi : (hi + maxBelow(a, n >> 1)) / 2;
}

/** Rearranges a so that a[k] is its k-th smallest value (everything before it is <= it); returns it. */
function kth(a: Float32Array, k: number): number {
  let lo = 0;
  let hi = a.length - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >> 1]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i++] = a[j]!;
        a[j--] = t;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else break;
  }
  return a[k]!;
}

/** Largest of a[0..k) (after kth(a, k)). */
function maxBelow(a: Float32Array, k: number): number {
  let m = -Infinity;
  for (let i = 0; i < k; i++) if (a[i]! > m) m = a[i]!;
  return m;
}

/** Background estimate [3][H*W] (values in [0, 1]). */
export function estimateBackground(clip: UnitClip): Float32Array[] {
  const { height: H, width: W } = clip;
  // Up to BACKGROUND_FRAMES frames spread over the clip are enough for the medians.
  const F = Math.min(clip.frames, BACKGROUND_FRAMES);
  const pick = (f: number) => (F === 1 ? 0 : Math.round((f * (clip.frames - 1)) / (F - 1)));
  const rows: Float32Array[] = [];
  const cols: Float32Array[] = [];
  for (let k = 0; k < 3; k++) {
    const row = new Float32Array(H);
    const col = new Float32Array(W);
    const buf = new Float32Array(Math.max(W, H) * F);
    for (let i = 0; i < H; i++) {
      for (let f = 0; f < F; f++) buf.set(clip.plane(pick(f), k).subarray(i * W, (i + 1) * W), f * W);
      row[i] = median(buf.subarray(0, W * F));
    }
    const planes = Array.from({ length: F }, (_, f) => clip.plane(pick(f), k));
    for (let j = 0; j < W; j++) {
      for (let f = 0; f < F; f++) {
        const p = planes[f]!;
        for (let i = 0; i < H; i++) buf[f * H + i] = p[i * W + j]!;
      }
      col[j] = median(buf.subarray(0, H * F));
    }
    rows.push(row);
    cols.push(col);
  }
  // Constant along rows (plain or vertical ramp) or along columns (horizontal ramp): keep the model
  // that explains the first frame best (median distance, so that objects do not count).
  const byRow = rows.map((row) => {
    const bg = new Float32Array(H * W);
    for (let i = 0; i < H; i++) bg.fill(row[i]!, i * W, (i + 1) * W);
    return bg;
  });
  const byCol = cols.map((col) => {
    const bg = new Float32Array(H * W);
    for (let i = 0; i < H; i++) bg.set(col, i * W);
    return bg;
  });
  const first = [0, 1, 2].map((k) => clip.plane(0, k));
  const dist = (bg: Float32Array[]) => {
    const d = new Float32Array(H * W);
    for (let k = 0; k < 3; k++) {
      const p = first[k]!;
      const m = bg[k]!;
      for (let q = 0; q < H * W; q++) d[q]! += Math.abs(p[q]! - m[q]!);
    }
    return median(d);
  };
  return dist(byRow) <= dist(byCol) ? byRow : byCol;
}

const PALETTE: readonly Rgb[] = COLOURS.map((c) => COLOUR_RGB[c]);

/** Least-squares fit of p - b as alpha * (c - b): alpha, residual |p - b - alpha (c - b)| and contrast |c - b|. */
interface Fit {
  alpha: number;
  residual: number;
  contrast: number;
}

function fitColour(c: Rgb, d0: number, d1: number, d2: number, b: Rgb, out: Fit): Fit {
  const e0 = c[0] - b[0];
  const e1 = c[1] - b[1];
  const e2 = c[2] - b[2];
  const ee = e0 * e0 + e1 * e1 + e2 * e2;
  const alpha = (d0 * e0 + d1 * e1 + d2 * e2) / ee;
  const r0 = d0 - alpha * e0;
  const r1 = d1 - alpha * e1;
  const r2 = d2 - alpha * e2;
  out.alpha = alpha;
  out.residual = Math.sqrt(r0 * r0 + r1 * r1 + r2 * r2);
  out.contrast = Math.sqrt(ee);
  return out;
}

/** Regions of one frame: for each colour found, its largest region of at least `minArea` pixels. */
export function segmentFrame(clip: UnitClip, f: number, bg: Float32Array[], minArea: number): Region[] {
  const { height: H, width: W } = clip;
  const n = H * W;
  const [p0, p1, p2] = [0, 1, 2].map((k) => clip.plane(f, k)) as [Float32Array, Float32Array, Float32Array];
  const [b0, b1, b2] = bg as [Float32Array, Float32Array, Float32Array];
  const bgAt = (q: number): Rgb => [b0[q]!, b1[q]!, b2[q]!];
  const fit: Fit = { alpha: 0, residual: 0, contrast: 0 };
  const alphaAt = (c: number, q: number) =>
    fitColour(PALETTE[c]!, p0[q]! - b0[q]!, p1[q]! - b1[q]!, p2[q]! - b2[q]!, bgAt(q), fit).alpha;
  const label = new Int8Array(n).fill(-1);
  const strong = new Uint8Array(n);
  const resid = new Float32Array(n);
  for (let q = 0; q < n; q++) {
    const d0 = p0[q]! - b0[q]!;
    const d1 = p1[q]! - b1[q]!;
    const d2 = p2[q]! - b2[q]!;
    if (d0 * d0 + d1 * d1 + d2 * d2 < FOREGROUND * FOREGROUND) continue;
    const b = bgAt(q);
    let best = -1;
    let bestScore = Infinity;
    let bestAlpha = 0;
    let bestContrast = 1;
    for (let c = 0; c < PALETTE.length; c++) {
      const { alpha, residual, contrast } = fitColour(PALETTE[c]!, d0, d1, d2, b, fit);
      if (contrast < MIN_CONTRAST || alpha < 0.25) continue;
      const score = residual + contrast * Math.max(0, alpha - 1);
      if (score < bestScore) {
        best = c;
        bestScore = score;
        bestAlpha = alpha;
        bestContrast = contrast;
      }
    }
    if (best < 0) continue;
    label[q] = best;
    resid[q] = bestScore / bestContrast;
    if (bestAlpha >= 0.5) strong[q] = 1;
  }
  const seen = new Uint8Array(n);
  const largest = new Map<number, number[]>();
  for (let q0 = 0; q0 < n; q0++) {
    if (!strong[q0] || seen[q0]) continue;
    const c = label[q0]!;
    const comp: number[] = [];
    const stack = [q0];
    seen[q0] = 1;
    while (stack.length > 0) {
      const q = stack.pop()!;
      comp.push(q);
      const i = Math.floor(q / W);
      const j = q - i * W;
      for (let di = -1; di <= 1; di++) {
        for (let dj = -1; dj <= 1; dj++) {
          const ii = i + di;
          const jj = j + dj;
          if (ii < 0 || jj < 0 || ii >= H || jj >= W) continue;
          const r = ii * W + jj;
          if (strong[r] && !seen[r] && label[r] === c) {
            seen[r] = 1;
            stack.push(r);
          }
        }
      }
    }
    if (comp.length >= minArea && comp.length > (largest.get(c)?.length ?? 0)) largest.set(c, comp);
  }
  const regions: Region[] = [];
  for (const [c, comp] of largest) {
    let residual = 0;
    let [i0, i1, j0, j1] = [H, 0, W, 0];
    for (const q of comp) {
      residual += resid[q]!;
      const i = Math.floor(q / W);
      const j = q - i * W;
      [i0, i1, j0, j1] = [Math.min(i0, i), Math.max(i1, i + 1), Math.min(j0, j), Math.max(j1, j + 1)];
    }
    // The grown region within its (grown) bounding box: dilate the core by GROW pixels.
    i0 = Math.max(0, i0 - GROW);
    j0 = Math.max(0, j0 - GROW);
    i1 = Math.min(H, i1 + GROW);
    j1 = Math.min(W, j1 + GROW);
    const bw = j1 - j0;
    const inRegion = new Uint8Array((i1 - i0) * bw);
    for (const q of comp) {
      const i = Math.floor(q / W);
      const j = q - i * W;
      for (let ii = Math.max(i0, i - GROW); ii < Math.min(i1, i + GROW + 1); ii++)
        inRegion.fill(
          1,
          (ii - i0) * bw + Math.max(j0, j - GROW) - j0,
          (ii - i0) * bw + Math.min(j1, j + GROW + 1) - j0,
        );
    }
    const alpha = new Float32Array(inRegion.length);
    let area = 0;
    let sx = 0;
    let sy = 0;
    for (let i = i0; i < i1; i++) {
      for (let j = j0; j < j1; j++) {
        const q = i * W + j;
        const b = (i - i0) * bw + (j - j0);
        if (!inRegion[b] || (label[q]! >= 0 && label[q] !== c)) continue;
        const a = Math.min(1.25, Math.max(-0.25, alphaAt(c, q)));
        alpha[b] = a;
        area += a;
        sx += a * (j + 0.5);
        sy += a * (i + 0.5);
      }
    }
    if (area <= 0) continue;
    regions.push({
      colour: c,
      box: { i0, i1, j0, j1 },
      alpha,
      area,
      cx: sx / area,
      cy: sy / area,
      residual: residual / comp.length,
    });
  }
  return regions;
}
