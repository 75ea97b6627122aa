/**
 * Exact pixel coverage: the area of a shape inside an axis-aligned box (a pixel), in pixel units.
 * Exact box-filtered anti-aliasing means coverage is additive: a pixel's coverage is the mean of its
 * sub-pixels' coverages, so a render at 4x the resolution box-filtered down equals the 1x render.
 *
 * Shapes, centred at (cx, cy) with extent s (y grows downwards):
 *   square   - the box [cx - s/2, cx + s/2] x [cy - s/2, cy + s/2]
 *   circle   - the disk of diameter s
 *   triangle - isosceles, apex up: apex (cx, cy - s/2), base from (cx - s/2, cy + s/2) to (cx + s/2, cy + s/2)
 */
import type { Shape } from "./scene.ts";

/** Area of `shape` (centre cx, cy; extent s) inside the box [x0, x1] x [y0, y1]. */
export function coverage(
  shape: Shape,
  cx: number,
  cy: number,
  s: number,
  x0: number,
  y0: number,
  x1: number,
  y1: number,
): number {
  const h = s / 2;
  if (x1 <= cx - h || x0 >= cx + h || y1 <= cy - h || y0 >= cy + h) return 0;
  switch (shape) {
    case "square":
      return overlap(x0, x1, cx - h, cx + h) * overlap(y0, y1, cy - h, cy + h);
    case "circle":
      return diskBox(h, x0 - cx, y0 - cy, x1 - cx, y1 - cy);
    case "triangle":
      return triangleBox(cx, cy, h, x0, y0, x1, y1);
  }
}

/** Area of the shape itself. */
export function shapeArea(shape: Shape, s: number): number {
  return shape === "square" ? s * s : shape === "circle" ? (Math.PI * s * s) / 4 : (s * s) / 2;
}

function overlap(a0: number, a1: number, b0: number, b1: number): number {
  return Math.max(0, Math.min(a1, b1) - Math.max(a0, b0));
}

/**
 * Disk of radius r at the origin inside [x0, x1] x [y0, y1]. With h(x) = sqrt(r^2 - x^2), the area is
 * the integral over x of the length of [-h, h] within [y0, y1], which is clamp(h, y0, y1) -
 * clamp(-h, y0, y1) = G(y0, y1) + G(-y1, -y0) with G(a, b) = integral of clamp(h, a, b), and
 * clamp(h, a, b) = a + max(0, h - a) - max(0, h - b), whose integrals have closed forms.
 */
function diskBox(r: number, x0: number, y0: number, x1: number, y1: number): number {
  if (x0 * x0 + y0 * y0 <= r * r && x1 * x1 + y0 * y0 <= r * r && x0 * x0 + y1 * y1 <= r * r) {
    if (x1 * x1 + y1 * y1 <= r * r) return (x1 - x0) * (y1 - y0); // box inside the disk
  }
  const u = Math.max(x0, -r);
  const v = Math.min(x1, r);
  if (v <= u) return 0;
  const g1 = y0 * (v - u) + above(r, u, v, y0) - above(r, u, v, y1);
  const g2 = -y1 * (v - u) + above(r, u, v, -y1) - above(r, u, v, -y0);
  return Math.max(0, g1 + g2);
}

/** Integral over [u, v] (within [-r, r]) of max(0, sqrt(r^2 - x^2) - c). */
function above(r: number, u: number, v: number, c: number): number {
  if (c >= r) return 0;
  const w = c <= 0 ? r : Math.sqrt(r * r - c * c);
  const lo = Math.max(u, -w);
  const hi = Math.min(v, w);
  if (hi <= lo) return 0;
  return arcPrimitive(r, hi) - arcPrimitive(r, lo) - c * (hi - lo);
}

/** An antiderivative of sqrt(r^2 - x^2) on [-r, r]. */
function arcPrimitive(r: number, x: number): number {
  return (
    0.5 * (x * Math.sqrt(Math.max(0, r * r - x * x)) + r * r * Math.asin(Math.max(-1, Math.min(1, x / r))))
  );
}

type Pt = [number, number];

/** Triangle inside a box: the triangle clipped by the box's four half-planes (Sutherland-Hodgman), then its area. */
function triangleBox(
  cx: number,
  cy: number,
  h: number,
  x0: number,
  y0: number,
  x1: number,
  y1: number,
): number {
  let poly: Pt[] = [
    [cx, cy - h],
    [cx + h, cy + h],
    [cx - h, cy + h],
  ];
  poly = clip(poly, 0, 1, x0);
  poly = clip(poly, 0, -1, x1);
  poly = clip(poly, 1, 1, y0);
  poly = clip(poly, 1, -1, y1);
  let a = 0;
  for (let i = 0; i < poly.length; i++) {
    const p = poly[i]!;
    const q = poly[(i + 1) % poly.length]!;
    a += p[0] * q[1] - q[0] * p[1];
  }
  return Math.abs(a) / 2;
}

/** Keeps the part of a convex polygon in the half-plane sign * (p[axis] - at) >= 0. */
function clip(poly: Pt[], axis: 0 | 1, sign: 1 | -1, at: number): Pt[] {
  const out: Pt[] = [];
  for (let i = 0; i < poly.length; i++) {
    const p = poly[i]!;
    const q = poly[(i + 1) % poly.length]!;
    const dp = sign * (p[axis] - at);
    const dq = sign * (q[axis] - at);
    if (dp >= 0) out.push(p);
    if (dp >= 0 !== dq >= 0) {
      const k = dp / (dp - dq);
      out.push([p[0] + k * (q[0] - p[0]), p[1] + k * (q[1] - p[1])]);
    }
  }
  return out;
}
