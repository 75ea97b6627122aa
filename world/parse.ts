/**
 * A person's caption -> the world's attributes: per object colour, shape, motion, size and speed
 * class, plus the background when one is named. Words it does not know are skipped (and listed).
 *
 * Reading: a shape word ("circle", "ball", "square", "box", "triangle") makes an object out of the
 * colour and size words before it; motion and speed words after it belong to it, until an article or
 * "and" followed by a colour, size or shape word starts the next object; a motion named after the last object only is shared by all of them
 * ("a red ball and a blue box falling"). The background is the phrase around "background", "backdrop" or
 * "gradient" (tones black, gray/grey, white; "vertical"/"horizontal", "from X to Y"), or "on <tone>"
 * at the end. A gradient's direction is named only by "vertical"/"horizontal" or "top"/"bottom".
 */
import type { Colour, Motion, Shape, SizeClass, SpeedClass, Tone } from "./scene.ts";

export interface ParsedObject {
  colour?: Colour;
  shape?: Shape;
  motion?: Motion;
  size?: SizeClass;
  speed?: SpeedClass;
}

export interface ParsedBackground {
  kind: "plain" | "gradient";
  tone?: Tone;
  from?: Tone;
  to?: Tone;
  direction?: "vertical" | "horizontal";
}

export interface ParsedCaption {
  objects: ParsedObject[];
  background?: ParsedBackground;
  /** Words that were neither attributes nor common function words. */
  unknown: string[];
}

const COLOUR_WORDS: Record<string, Colour> = {
  red: "red",
  green: "green",
  blue: "blue",
  yellow: "yellow",
  white: "white",
  orange: "orange",
  purple: "purple",
  violet: "purple",
};
const SHAPE_WORDS: Record<string, Shape> = {
  circle: "circle",
  ball: "circle",
  disc: "circle",
  disk: "circle",
  dot: "circle",
  square: "square",
  box: "square",
  block: "square",
  triangle: "triangle",
};
const MOTION_WORDS: Record<string, Motion> = {
  left: "left",
  leftward: "left",
  leftwards: "left",
  right: "right",
  rightward: "right",
  rightwards: "right",
  up: "up",
  upward: "up",
  upwards: "up",
  rising: "up",
  rises: "up",
  rise: "up",
  ascending: "up",
  ascends: "up",
  climbing: "up",
  climbs: "up",
  down: "down",
  downward: "down",
  downwards: "down",
  falling: "down",
  falls: "down",
  fall: "down",
  sinking: "down",
  sinks: "down",
  descending: "down",
  descends: "down",
  dropping: "down",
  drops: "down",
  still: "still",
  stationary: "still",
  static: "still",
  motionless: "still",
  unmoving: "still",
  place: "still", // "in place"
};
const SIZE_WORDS: Record<string, SizeClass> = {
  small: "small",
  little: "small",
  tiny: "small",
  medium: "medium",
  big: "big",
  large: "big",
  huge: "big",
};
const SPEED_WORDS: Record<string, SpeedClass> = {
  slowly: "slow",
  slow: "slow",
  gently: "slow",
  gradually: "slow",
  quickly: "fast",
  quick: "fast",
  fast: "fast",
  rapidly: "fast",
  swiftly: "fast",
};
const TONE_WORDS: Record<string, Tone> = { black: "black", gray: "gray", grey: "gray", white: "white" };
const BACKGROUND_NOUNS = new Set(["background", "backdrop", "gradient"]);
const BACKGROUND_WORDS = new Set(["vertical", "horizontal", "plain", "solid", "from", "to", "top", "bottom"]);
const PREPOSITIONS = new Set(["on", "against", "over", "in", "with"]);
const BOUNDARIES = new Set(["a", "an", "the", "and", "one", "another", "while", "with"]);
const MOVE_VERBS = new Set(["move", "moves", "moving", "moved"]);
const FUNCTION_WORDS = new Set([
  ...BOUNDARIES,
  ...MOVE_VERBS,
  ...PREPOSITIONS,
  ...["is", "are", "that", "which", "it", "its", "of", "at", "to", "towards", "toward", "not", "does", "do"],
  ...["going", "goes", "drifting", "drifts", "sliding", "slides", "floating", "floats", "staying", "stays"],
  ...["standing", "stands", "resting", "rests", "sitting", "sits", "remains", "remaining", "shape"],
]);

function tokens(text: string): string[] {
  return text
    .toLowerCase()
    .replace(/n't\b/g, " not")
    .split(/[^a-z]+/)
    .filter((w) => w.length > 0)
    .map((w) => (w.length > 3 && w.endsWith("s") && SHAPE_WORDS[w.slice(0, -1)] ? w.slice(0, -1) : w));
}

/** Finds the background phrase; returns it and the indices it used. */
function findBackground(ws: readonly string[]): { bg?: ParsedBackground; used: Set<number> } {
  const used = new Set<number>();
  let k = ws.findIndex((w) => BACKGROUND_NOUNS.has(w));
  if (k < 0) {
    // "on black" / "against white" at the end of the caption.
    const n = ws.length;
    const tone = TONE_WORDS[ws[n - 1] ?? ""];
    const i = PREPOSITIONS.has(ws[n - 2] ?? "") ? n - 2 : PREPOSITIONS.has(ws[n - 3] ?? "") ? n - 3 : -1;
    if (tone === undefined || i < 0 || (i === n - 3 && !BOUNDARIES.has(ws[n - 2]!))) return { used };
    for (let j = i; j < n; j++) used.add(j);
    return { bg: { kind: "plain", tone }, used };
  }
  let lo = k;
  while (lo > 0) {
    const w = ws[lo - 1]!;
    if (TONE_WORDS[w] || BACKGROUND_WORDS.has(w) || w === "a" || w === "an" || w === "the") lo--;
    else {
      if (PREPOSITIONS.has(w)) lo--;
      break;
    }
  }
  let hi = k + 1;
  while (hi < ws.length && (TONE_WORDS[ws[hi]!] || BACKGROUND_WORDS.has(ws[hi]!))) hi++;
  const tones: Tone[] = [];
  let dir: ParsedBackground["direction"];
  for (k = lo; k < hi; k++) {
    used.add(k);
    const w = ws[k]!;
    const tone = TONE_WORDS[w];
    if (tone) tones.push(tone);
    if (w === "vertical" || w === "top" || w === "bottom") dir = "vertical";
    if (w === "horizontal") dir = "horizontal";
  }
  const gradient = ws.slice(lo, hi).includes("gradient") || tones.length > 1;
  const bg: ParsedBackground = gradient ? { kind: "gradient" } : { kind: "plain" };
  if (gradient) {
    if (tones[0]) bg.from = tones[0];
    if (tones[1]) bg.to = tones[1];
    if (dir) bg.direction = dir;
  } else if (tones[0]) bg.tone = tones[0];
  return { bg, used };
}

const isEmpty = (o: ParsedObject) => Object.keys(o).length === 0;

/** Whether the next content word from index i names an object (a colour, size or shape word). */
function startsObject(ws: readonly string[], i: number, used: Set<number>): boolean {
  for (; i < ws.length; i++) {
    const w = ws[i]!;
    if (used.has(i)) return false;
    if (COLOUR_WORDS[w] || SIZE_WORDS[w] || SHAPE_WORDS[w]) return true;
    if (!BOUNDARIES.has(w) && !FUNCTION_WORDS.has(w)) return false;
  }
  return false;
}

/** Reads a caption into attributes; tolerant of word order, synonyms and unknown words. */
export function parseCaption(text: string): ParsedCaption {
  const ws = tokens(text);
  const { bg, used } = findBackground(ws);
  const objects: ParsedObject[] = [];
  const unknown: string[] = [];
  let pending: ParsedObject = {};
  let current: ParsedObject | undefined;
  for (let i = 0; i < ws.length; i++) {
    if (used.has(i)) continue;
    const w = ws[i]!;
    const into = current ?? pending;
    if (SHAPE_WORDS[w]) {
      current = { ...pending, shape: SHAPE_WORDS[w] };
      objects.push(current);
      pending = {};
    } else if (COLOUR_WORDS[w]) {
      if (current) current = undefined;
      pending.colour = COLOUR_WORDS[w];
    } else if (SIZE_WORDS[w]) {
      if (current) current = undefined;
      const size = SIZE_WORDS[w];
      if (size !== "medium") pending.size = size;
    } else if (w === "not" && MOVE_VERBS.has(ws[i + 1] ?? "")) {
      into.motion = "still";
      i++;
    } else if (MOTION_WORDS[w]) {
      into.motion = MOTION_WORDS[w];
    } else if (SPEED_WORDS[w]) {
      into.speed = SPEED_WORDS[w];
    } else if (BOUNDARIES.has(w)) {
      // "and a green square": a new object; "moving to the left": not.
      if (startsObject(ws, i + 1, used)) current = undefined;
    } else if (!FUNCTION_WORDS.has(w)) {
      unknown.push(w);
    }
  }
  if (!isEmpty(pending)) objects.push(pending);
  // "a red ball and a blue box falling": a motion after the last object only is shared by all.
  const last = objects[objects.length - 1];
  if (last?.motion && objects.slice(0, -1).every((o) => o.motion === undefined && o.speed === undefined)) {
    for (const o of objects.slice(0, -1))
      Object.assign(o, { motion: last.motion }, last.speed && { speed: last.speed });
  }
  return { objects, ...(bg && { background: bg }), unknown };
}
