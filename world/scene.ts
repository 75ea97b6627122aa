/**
 * The toy world: a scene is a background and one or two flat-coloured objects moving in straight lines.
 * Everything is analytic, so any frame at any size and time has exact ground truth.
 *
 * Coordinates: x across the width and y down the height, both normalised to [0, 1] (0,0 = top-left
 * corner of the frame). An object's `size` is a fraction of the frame height, in both directions, so
 * a circle stays round at any resolution: in pixels its extent is size*H by size*H. Its position is
 * the centre of its bounding box. Speed is in frame-widths per second (left/right) or frame-heights
 * per second (up/down): position(t) = start + speed * t * direction.
 *
 * The world is laid out for frames WORLD_ASPECT = 3:2 (width:height), e.g. 32x48, 64x96, 256x384
 * (height x width). Sampled scenes keep every object inside the frame, and apart from each other,
 * for t in [0, CLIP_SECONDS] (the first to the last frame of a 16-frame clip at 8 fps, or of the
 * 61-frame clip at 32 fps); in wider frames they stay inside too, in narrower ones they may not.
 */
import { invalidArgument } from "../core/errors.ts";

export const COLOURS = ["red", "green", "blue", "yellow", "white", "orange", "purple"] as const;
export type Colour = (typeof COLOURS)[number];
export const SHAPES = ["circle", "square", "triangle"] as const;
export type Shape = (typeof SHAPES)[number];
export const MOTIONS = ["left", "right", "up", "down", "still"] as const;
export type Motion = (typeof MOTIONS)[number];
export const TONES = ["black", "gray", "white"] as const;
/** A background tone (achromatic, so that every object colour stands out from it). */
export type Tone = (typeof TONES)[number];
export const SIZE_CLASSES = ["small", "medium", "big"] as const;
export type SizeClass = (typeof SIZE_CLASSES)[number];
export const SPEED_CLASSES = ["slow", "fast"] as const;
export type SpeedClass = (typeof SPEED_CLASSES)[number];

/** RGB in [0, 1]. */
export type Rgb = readonly [number, number, number];

export const COLOUR_RGB: Readonly<Record<Colour, Rgb>> = {
  red: [0.9, 0.1, 0.1],
  green: [0.1, 0.75, 0.1],
  blue: [0.1, 0.2, 0.95],
  yellow: [0.95, 0.85, 0.1],
  white: [1, 1, 1],
  orange: [1, 0.55, 0.05],
  purple: [0.55, 0.1, 0.85],
};

export const TONE_RGB: Readonly<Record<Tone, Rgb>> = {
  black: [0, 0, 0],
  gray: [0.5, 0.5, 0.5],
  white: [1, 1, 1],
};

/** Width / height of the frames the world is laid out for (3:2). */
export const WORLD_ASPECT = 1.5;
/** Time of the last frame of a clip: 15/8 s (16 frames at 8 fps) = 60/32 s (61 frames at 32 fps). */
export const CLIP_SECONDS = 1.875;
/** The base clip: 16 frames at 8 fps; the interpolated clip: 61 frames at 32 fps (frame 4k = base frame k). */
export const BASE_FRAMES = 16;
export const BASE_FPS = 8;

/** Nominal object size (fraction of the frame height) per class; sampled sizes lie within +-SIZE_JITTER. */
export const SIZE_OF: Readonly<Record<SizeClass, number>> = { small: 0.2, medium: 0.28, big: 0.36 };
export const SIZE_JITTER = 0.02;
/** Speed per class in frame-widths (or heights) per second: 0.28 or 0.56 of the frame over a clip. */
export const SPEED_OF: Readonly<Record<SpeedClass, number>> = { slow: 0.15, fast: 0.3 };

/** Plain: one tone. Gradient: a linear ramp from `from` to `to`, top to bottom (vertical) or left to right. */
export type Background =
  | { readonly kind: "plain"; readonly tone: Tone }
  | {
      readonly kind: "gradient";
      readonly direction: "vertical" | "horizontal";
      readonly from: Tone;
      readonly to: Tone;
    };

export interface WorldObject {
  readonly shape: Shape;
  readonly colour: Colour;
  /** Fraction of the frame height (the side of the square, the diameter of the circle, the triangle's base and height). */
  readonly size: number;
  /** Centre of the bounding box at t = 0, normalised. */
  readonly x: number;
  readonly y: number;
  readonly motion: Motion;
  /** Frame-widths (left/right) or frame-heights (up/down) per second; 0 when still. */
  readonly speed: number;
}

/** Objects are drawn in order (a later one covers an earlier one). */
export interface Scene {
  readonly background: Background;
  readonly objects: readonly WorldObject[];
}

const DIRECTION: Readonly<Record<Motion, readonly [number, number]>> = {
  left: [-1, 0],
  right: [1, 0],
  up: [0, -1],
  down: [0, 1],
  still: [0, 0],
};

export function direction(m: Motion): readonly [number, number] {
  return DIRECTION[m];
}

/** Centre of an object's bounding box at time t (seconds), normalised. */
export function positionAt(o: WorldObject, t: number): { x: number; y: number } {
  const [dx, dy] = DIRECTION[o.motion];
  return { x: o.x + dx * o.speed * t, y: o.y + dy * o.speed * t };
}

/** Half extents of an object's bounding box in normalised units, for frames of the given aspect (W/H). */
export function halfExtent(o: WorldObject, aspect = WORLD_ASPECT): { hx: number; hy: number } {
  return { hx: o.size / 2 / aspect, hy: o.size / 2 };
}

/** The size class nearest to a size. */
export function sizeClassOf(size: number): SizeClass {
  let best: SizeClass = "medium";
  for (const c of SIZE_CLASSES) if (Math.abs(SIZE_OF[c] - size) < Math.abs(SIZE_OF[best] - size)) best = c;
  return best;
}

/** The speed class nearest to a speed (undefined when still). */
export function speedClassOf(o: Pick<WorldObject, "motion" | "speed">): SpeedClass | undefined {
  if (o.motion === "still") return undefined;
  return Math.abs(o.speed - SPEED_OF.slow) <= Math.abs(o.speed - SPEED_OF.fast) ? "slow" : "fast";
}

/** Background tones in play (one for plain, two for a gradient). */
export function tonesOf(b: Background): Tone[] {
  return b.kind === "plain" ? [b.tone] : [b.from, b.to];
}

/** Whether an object colour can be told from a background tone (white on white cannot). */
export function contrasts(c: Colour, tone: Tone): boolean {
  const a = COLOUR_RGB[c];
  const b = TONE_RGB[tone];
  return Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]) >= 0.4;
}

function oneOf<T extends string>(field: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== "string" || !(allowed as readonly string[]).includes(v))
    throw invalidArgument(field, `must be one of ${allowed.join(", ")}; got ${JSON.stringify(v)}`);
  return v as T;
}

function finite(field: string, v: unknown, lo: number, hi: number): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v < lo || v > hi)
    throw invalidArgument(field, `must be a number in [${lo}, ${hi}]; got ${JSON.stringify(v)}`);
  return v;
}

/** Checks a scene's fields (e.g. one read back from a dataset's metadata); returns it typed. */
export function checkScene(s: unknown): Scene {
  if (s === null || typeof s !== "object") throw invalidArgument("scene", "must be an object");
  const { background: b, objects } = s as Record<string, unknown>;
  if (b === null || typeof b !== "object") throw invalidArgument("scene.background", "must be an object");
  const bg = b as Record<string, unknown>;
  const kind = oneOf("scene.background.kind", bg.kind, ["plain", "gradient"] as const);
  const background: Background =
    kind === "plain"
      ? { kind, tone: oneOf("scene.background.tone", bg.tone, TONES) }
      : {
          kind,
          direction: oneOf("scene.background.direction", bg.direction, ["vertical", "horizontal"] as const),
          from: oneOf("scene.background.from", bg.from, TONES),
          to: oneOf("scene.background.to", bg.to, TONES),
        };
  if (!Array.isArray(objects) || objects.length < 1 || objects.length > 2)
    throw invalidArgument("scene.objects", "must be an array of 1 or 2 objects");
  const out = objects.map((o: unknown, i): WorldObject => {
    const f = `scene.objects[${i}]`;
    if (o === null || typeof o !== "object") throw invalidArgument(f, "must be an object");
    const r = o as Record<string, unknown>;
    const colour = oneOf(`${f}.colour`, r.colour, COLOURS);
    for (const tone of tonesOf(background)) {
      if (!contrasts(colour, tone))
        throw invalidArgument(`${f}.colour`, `${colour} cannot be seen on a ${tone} background`);
    }
    return {
      shape: oneOf(`${f}.shape`, r.shape, SHAPES),
      colour,
      size: finite(`${f}.size`, r.size, 0.02, 1),
      x: finite(`${f}.x`, r.x, -1, 2),
      y: finite(`${f}.y`, r.y, -1, 2),
      motion: oneOf(`${f}.motion`, r.motion, MOTIONS),
      speed: finite(`${f}.speed`, r.speed, 0, 10),
    };
  });
  return { background, objects: out };
}
