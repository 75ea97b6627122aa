/**
 * Seeded random scenes (core/prng.ts mulberry32) and the held-out combinations.
 *
 * Held out: HELD_OUT lists ten colour + shape + motion triples that training scenes never contain
 * (no object of a "train" scene has one of them), while each colour, shape and motion on its own,
 * and every other triple, is seen. A "heldout" scene's first object has a held-out triple (its
 * second object, if any, anything). Training and evaluation both call these functions, so they agree.
 *
 * Scene distribution: 1 object, or 2 with probability `twoObjects` (distinct colours); background
 * plain black, gray or white (0.2 each) or a two-tone gradient (0.4; random direction and tones);
 * colours, shapes, motions, size and speed classes uniform; sizes within +-SIZE_JITTER of their class;
 * start positions uniform among those that keep every object inside the frame and the objects apart
 * (by a margin) for the whole clip.
 */
import { invalidArgument } from "../core/errors.ts";
import { mulberry32 } from "../core/prng.ts";
import type { ParsedCaption } from "./parse.ts";
import {
  type Background,
  CLIP_SECONDS,
  COLOURS,
  type Colour,
  contrasts,
  direction,
  halfExtent,
  MOTIONS,
  type Motion,
  type Scene,
  SHAPES,
  type Shape,
  SIZE_CLASSES,
  SIZE_JITTER,
  SIZE_OF,
  type SizeClass,
  SPEED_CLASSES,
  SPEED_OF,
  type SpeedClass,
  TONES,
  tonesOf,
  type WorldObject,
} from "./scene.ts";

export interface Triple {
  readonly colour: Colour;
  readonly shape: Shape;
  readonly motion: Motion;
}

/** The held-out triples: every motion twice, every shape three or four times, every colour at least once. */
export const HELD_OUT: readonly Triple[] = [
  { colour: "red", shape: "triangle", motion: "up" },
  { colour: "green", shape: "circle", motion: "left" },
  { colour: "blue", shape: "square", motion: "still" },
  { colour: "yellow", shape: "circle", motion: "down" },
  { colour: "white", shape: "triangle", motion: "right" },
  { colour: "orange", shape: "square", motion: "up" },
  { colour: "purple", shape: "circle", motion: "right" },
  { colour: "red", shape: "square", motion: "down" },
  { colour: "green", shape: "triangle", motion: "still" },
  { colour: "blue", shape: "triangle", motion: "left" },
];

export function isHeldOut(o: Triple): boolean {
  return HELD_OUT.some((h) => h.colour === o.colour && h.shape === o.shape && h.motion === o.motion);
}

export type Split = "train" | "heldout" | "any";
export const SPLITS: readonly Split[] = ["train", "heldout", "any"];

/** "heldout" when any object has a held-out triple, else "train". */
export function splitOf(scene: Scene): "train" | "heldout" {
  return scene.objects.some(isHeldOut) ? "heldout" : "train";
}

/** What a caption fixes about an object; placement (and size/speed when not given) is up to the sampler. */
export interface ObjectAttrs extends Triple {
  readonly sizeClass?: SizeClass;
  readonly speedClass?: SpeedClass;
}

export interface SampleOptions {
  split?: Split;
  /** Probability of a second object (default 0.3; 0 for single-object scenes). */
  twoObjects?: number;
}

/** Distance kept from the frame edges and between objects' bounding boxes (normalised units). */
const EDGE_MARGIN = 0.01;
const GAP = 0.04;

const pick = <T>(rng: () => number, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;

function sampleBackground(rng: () => number): Background {
  const u = rng();
  if (u < 0.6) return { kind: "plain", tone: TONES[Math.min(2, Math.floor(u / 0.2))]! };
  const from = pick(rng, TONES);
  const to = pick(
    rng,
    TONES.filter((t) => t !== from),
  );
  return { kind: "gradient", direction: rng() < 0.5 ? "vertical" : "horizontal", from, to };
}

function sampleTriple(rng: () => number, split: Split, avoid: readonly Colour[]): Triple {
  for (;;) {
    const t = { colour: pick(rng, COLOURS), shape: pick(rng, SHAPES), motion: pick(rng, MOTIONS) };
    if (avoid.includes(t.colour)) continue;
    if (split === "train" && isHeldOut(t)) continue;
    return t;
  }
}

/** One random scene. */
export function sampleScene(rng: () => number, opts: SampleOptions = {}): Scene {
  const split = opts.split ?? "train";
  const two = opts.twoObjects ?? 0.3;
  if (!SPLITS.includes(split)) throw invalidArgument("split", `must be one of ${SPLITS.join(", ")}`);
  if (!(two >= 0 && two <= 1)) throw invalidArgument("twoObjects", `must be in [0, 1]; got ${two}`);
  for (;;) {
    const n = rng() < two ? 2 : 1;
    const first = split === "heldout" ? pick(rng, HELD_OUT) : sampleTriple(rng, split, []);
    const triples = [first];
    if (n === 2) triples.push(sampleTriple(rng, split === "heldout" ? "any" : split, [first.colour]));
    const attrs = triples.map((t) => ({
      ...t,
      sizeClass: pick(rng, SIZE_CLASSES),
      speedClass: pick(rng, SPEED_CLASSES),
    }));
    let background = sampleBackground(rng);
    while (!attrs.every((a) => tonesOf(background).every((tone) => contrasts(a.colour, tone))))
      background = sampleBackground(rng);
    const scene = placeObjects(attrs, background, rng, true);
    if (scene) return scene;
  }
}

/** `count` scenes from one seed: the same seed and options give the same scenes. */
export function sampleScenes(seed: number, count: number, opts: SampleOptions = {}): Scene[] {
  const rng = mulberry32(seed);
  return Array.from({ length: count }, () => sampleScene(rng, opts));
}

/**
 * Places objects with the given attributes: random start positions keeping them inside the frame and
 * apart for the whole clip. Sizes are the class's nominal size (jittered when `jitter`), speeds the
 * class's; missing classes default to medium and slow. Undefined when no placement is found.
 */
export function placeObjects(
  attrs: readonly ObjectAttrs[],
  background: Background,
  rng: () => number,
  jitter = false,
): Scene | undefined {
  const sized = attrs.map((a) => ({
    a,
    size: SIZE_OF[a.sizeClass ?? "medium"] + (jitter ? (rng() * 2 - 1) * SIZE_JITTER : 0),
    speed: a.motion === "still" ? 0 : SPEED_OF[a.speedClass ?? "slow"],
  }));
  for (let attempt = 0; attempt < 200; attempt++) {
    const objects: WorldObject[] = sized.map(({ a, size, speed }) => {
      const o = { shape: a.shape, colour: a.colour, motion: a.motion, size, speed, x: 0, y: 0 };
      const { hx, hy } = halfExtent(o);
      const [dx, dy] = direction(a.motion);
      const along = (h: number, d: number) => {
        const lo = h + EDGE_MARGIN + Math.max(0, -d * speed * CLIP_SECONDS);
        const hi = 1 - h - EDGE_MARGIN - Math.max(0, d * speed * CLIP_SECONDS);
        return lo + rng() * Math.max(0, hi - lo);
      };
      return { ...o, x: along(hx, dx), y: along(hy, dy) };
    });
    if (allApart(objects)) return { background, objects };
  }
  return undefined;
}

/** Whether no two objects' bounding boxes (grown by GAP) meet during [0, CLIP_SECONDS]. */
export function allApart(objects: readonly WorldObject[]): boolean {
  for (let i = 0; i < objects.length; i++)
    for (let j = i + 1; j < objects.length; j++) if (meet(objects[i]!, objects[j]!)) return false;
  return true;
}

function meet(a: WorldObject, b: WorldObject): boolean {
  const ea = halfExtent(a);
  const eb = halfExtent(b);
  const [adx, ady] = direction(a.motion);
  const [bdx, bdy] = direction(b.motion);
  const ix = closeDuring(b.x - a.x, bdx * b.speed - adx * a.speed, ea.hx + eb.hx + GAP);
  const iy = closeDuring(b.y - a.y, bdy * b.speed - ady * a.speed, ea.hy + eb.hy + GAP);
  const lo = Math.max(0, ix[0], iy[0]);
  const hi = Math.min(CLIP_SECONDS, ix[1], iy[1]);
  return lo <= hi;
}

/** The times t with |d0 + v t| < reach, as [lo, hi] (empty when lo > hi). */
function closeDuring(d0: number, v: number, reach: number): [number, number] {
  if (v === 0) return Math.abs(d0) < reach ? [-Infinity, Infinity] : [1, 0];
  const t1 = (-reach - d0) / v;
  const t2 = (reach - d0) / v;
  return [Math.min(t1, t2), Math.max(t1, t2)];
}

/**
 * The scene a parsed caption describes, laid out by `rng`: every object needs a colour and a shape;
 * motion defaults to still, size to medium, speed to slow, the background to black (a gradient with
 * unnamed tones or direction to a vertical black to white one).
 */
export function sceneFromCaption(caption: ParsedCaption, rng: () => number): Scene {
  const { objects, background: b } = caption;
  if (objects.length < 1 || objects.length > 2)
    throw invalidArgument("caption", `must describe 1 or 2 objects; found ${objects.length}`);
  const attrs = objects.map((o, i): ObjectAttrs => {
    const which = objects.length > 1 ? `object ${i + 1}` : "the object";
    if (!o.colour) throw invalidArgument("caption", `${which} has no colour; allowed: ${COLOURS.join(", ")}`);
    if (!o.shape) throw invalidArgument("caption", `${which} has no shape; allowed: ${SHAPES.join(", ")}`);
    return {
      colour: o.colour,
      shape: o.shape,
      motion: o.motion ?? "still",
      ...(o.size && { sizeClass: o.size }),
      ...(o.speed && { speedClass: o.speed }),
    };
  });
  if (attrs.length === 2 && attrs[0]!.colour === attrs[1]!.colour)
    throw invalidArgument("caption", "the two objects must have different colours");
  const background: Background =
    b?.kind === "gradient"
      ? {
          kind: "gradient",
          direction: b.direction ?? "vertical",
          from: b.from ?? "black",
          to: b.to ?? "white",
        }
      : { kind: "plain", tone: b?.tone ?? "black" };
  for (const a of attrs) {
    for (const tone of tonesOf(background)) {
      if (!contrasts(a.colour, tone))
        throw invalidArgument("caption", `a ${a.colour} object cannot be seen on a ${tone} background`);
    }
  }
  const scene = placeObjects(attrs, background, rng);
  if (!scene) throw invalidArgument("caption", "the objects do not fit in the frame apart from each other");
  return scene;
}
