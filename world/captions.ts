/**
 * Captions of a scene. `captionOf(scene)` is the canonical, complete one ("a small red circle moving
 * left quickly on a black background"); `captionOf(scene, rng)` picks one of several phrasings and
 * leaves out some optional details (size, speed, background), so a model learns the wording varies.
 * Every phrasing is read back by parseCaption (parse.ts) to the attributes it states.
 */
import {
  type Background,
  type Motion,
  type Scene,
  sizeClassOf,
  speedClassOf,
  type WorldObject,
} from "./scene.ts";

type Rng = () => number;

/** Participle ("a red circle moving left") and third-person ("a red circle moves left") phrasings. */
const MOTION_WORDS: Readonly<Record<Motion, { ing: readonly string[]; verb: readonly string[] }>> = {
  left: {
    ing: ["moving left", "moving to the left", "going left", "drifting left", "sliding to the left"],
    verb: ["moves left", "moves to the left", "goes left", "drifts left", "slides to the left"],
  },
  right: {
    ing: ["moving right", "moving to the right", "going right", "drifting right", "sliding to the right"],
    verb: ["moves right", "moves to the right", "goes right", "drifts right", "slides to the right"],
  },
  up: {
    ing: ["moving up", "moving upwards", "going up", "rising", "floating up"],
    verb: ["moves up", "moves upwards", "goes up", "rises", "floats up"],
  },
  down: {
    ing: ["moving down", "moving downwards", "going down", "falling", "sinking"],
    verb: ["moves down", "moves downwards", "goes down", "falls", "sinks"],
  },
  still: {
    ing: ["staying still", "standing still", "not moving", "resting in place", "staying in place"],
    verb: ["stays still", "stands still", "does not move", "rests in place", "stays in place"],
  },
};

const SIZE_WORDS = { small: ["small", "little"], big: ["big", "large"] } as const;
const SPEED_WORDS = { slow: ["slowly"], fast: ["quickly", "fast"] } as const;

const pick = <T>(rng: Rng | undefined, xs: readonly T[]): T => xs[rng ? Math.floor(rng() * xs.length) : 0]!;
const maybe = (rng: Rng | undefined, p: number): boolean => (rng ? rng() < p : true);

function nounPhrase(o: WorldObject, rng: Rng | undefined): string {
  const cls = sizeClassOf(o.size);
  const size = cls !== "medium" && maybe(rng, 0.7) ? `${pick(rng, SIZE_WORDS[cls])} ` : "";
  const words = `${size}${o.colour} ${o.shape}`;
  return `${/^[aeiou]/.test(words) ? "an" : "a"} ${words}`;
}

function motionPhrase(o: WorldObject, form: "ing" | "verb", rng: Rng | undefined): string {
  const words = pick(rng, MOTION_WORDS[o.motion][form]);
  const speed = speedClassOf(o);
  return speed && maybe(rng, 0.5) ? `${words} ${pick(rng, SPEED_WORDS[speed])}` : words;
}

/** "a black background", "a vertical gradient from black to white", "a gray to white gradient". */
export function backgroundPhrase(b: Background, rng?: Rng): string {
  if (b.kind === "plain") return `a ${b.tone} ${pick(rng, ["background", "backdrop"])}`;
  return rng && rng() < 0.5
    ? `a ${b.from} to ${b.to} gradient`
    : `a ${b.direction} gradient from ${b.from} to ${b.to}`;
}

/** A caption of the scene: canonical without `rng`, a random phrasing with it. */
export function captionOf(scene: Scene, rng?: Rng): string {
  const form = rng && rng() < 0.5 ? "verb" : "ing";
  const clauses = scene.objects.map((o) => `${nounPhrase(o, rng)} ${motionPhrase(o, form, rng)}`);
  const body = clauses.join(" and ");
  if (!maybe(rng, 0.6)) return body;
  const prep = pick(rng, ["on", "against", "over"]);
  const bg = `${prep} ${backgroundPhrase(scene.background, rng)}`;
  return rng && rng() < 0.25 ? `${bg}, ${body}` : `${body} ${bg}`;
}

/** `k` captions of a scene: the canonical one first, then random phrasings. */
export function captionsOf(scene: Scene, k: number, rng: Rng): string[] {
  const out = [captionOf(scene)];
  for (let i = 1; i < k; i++) out.push(captionOf(scene, rng));
  return out;
}
