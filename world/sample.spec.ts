import assert from "node:assert/strict";
import { test } from "node:test";
import { LavieError } from "../core/errors.ts";
import { mulberry32 } from "../core/prng.ts";
import { parseCaption } from "./parse.ts";
import { allApart, HELD_OUT, isHeldOut, sampleScenes, sceneFromCaption, splitOf } from "./sample.ts";
import {
  CLIP_SECONDS,
  COLOURS,
  checkScene,
  contrasts,
  halfExtent,
  MOTIONS,
  positionAt,
  type Scene,
  SHAPES,
  tonesOf,
} from "./scene.ts";

function assertInside(s: Scene): void {
  for (const o of s.objects) {
    const { hx, hy } = halfExtent(o);
    for (let k = 0; k <= 60; k++) {
      const { x, y } = positionAt(o, k / 32);
      assert.ok(
        x - hx >= 0 && x + hx <= 1 && y - hy >= 0 && y + hy <= 1,
        `${JSON.stringify(o)} at frame ${k}`,
      );
    }
  }
}

/** Bounding boxes never overlap at the 61 frame times (checked independently of allApart). */
function assertApart(s: Scene): void {
  const [a, b] = s.objects;
  if (!a || !b) return;
  const ea = halfExtent(a);
  const eb = halfExtent(b);
  for (let k = 0; k <= 60; k++) {
    const pa = positionAt(a, k / 32);
    const pb = positionAt(b, k / 32);
    const overlap = Math.abs(pa.x - pb.x) < ea.hx + eb.hx && Math.abs(pa.y - pb.y) < ea.hy + eb.hy;
    assert.ok(!overlap, `objects overlap at frame ${k}: ${JSON.stringify(s)}`);
  }
}

test("the same seed gives the same scenes; scenes are valid, inside the frame and apart for the whole clip", () => {
  const a = sampleScenes(42, 400, { split: "any", twoObjects: 0.5 });
  assert.deepEqual(a, sampleScenes(42, 400, { split: "any", twoObjects: 0.5 }));
  assert.notDeepEqual(a, sampleScenes(43, 400, { split: "any", twoObjects: 0.5 }));
  assert.equal(CLIP_SECONDS, 60 / 32);
  let two = 0;
  const bgs = new Set<string>();
  for (const s of a) {
    assert.deepEqual(checkScene(JSON.parse(JSON.stringify(s))), s);
    assertInside(s);
    assert.ok(allApart(s.objects));
    assertApart(s);
    for (const o of s.objects) for (const t of tonesOf(s.background)) assert.ok(contrasts(o.colour, t));
    if (s.objects.length === 2) {
      two++;
      assert.notEqual(s.objects[0]!.colour, s.objects[1]!.colour);
    }
    bgs.add(JSON.stringify(s.background));
  }
  assert.ok(two > 150 && two < 250, `${two} two-object scenes of 400`);
  assert.ok(bgs.size >= 10, `${bgs.size} distinct backgrounds`);
});

test("training scenes never hold a held-out triple; held-out scenes always do; every attribute is trained", () => {
  const train = sampleScenes(1, 600, { split: "train", twoObjects: 0.5 });
  const seen = new Set<string>();
  for (const s of train) {
    assert.equal(splitOf(s), "train");
    for (const o of s.objects) seen.add(`${o.colour} ${o.shape} ${o.motion}`);
  }
  const all = COLOURS.length * SHAPES.length * MOTIONS.length;
  assert.equal(seen.size, all - HELD_OUT.length, "every other triple shows up in 600 scenes");
  for (const s of sampleScenes(2, 100, { split: "heldout" })) {
    assert.equal(splitOf(s), "heldout");
    assert.ok(isHeldOut(s.objects[0]!));
  }
  for (const c of COLOURS) assert.ok(HELD_OUT.some((h) => h.colour === c));
  for (const m of MOTIONS) assert.equal(HELD_OUT.filter((h) => h.motion === m).length, 2);
});

test("sceneFromCaption lays out what the caption says, with defaults, or says what is missing", () => {
  const s = sceneFromCaption(
    parseCaption("a big red triangle and a small blue circle rising quickly"),
    mulberry32(0),
  );
  assert.deepEqual(
    s.objects.map((o) => [o.colour, o.shape, o.motion, o.size, o.speed]),
    [
      ["red", "triangle", "up", 0.36, 0.3],
      ["blue", "circle", "up", 0.2, 0.3],
    ],
  );
  assert.deepEqual(s.background, { kind: "plain", tone: "black" });
  assertInside(s);
  const g = sceneFromCaption(parseCaption("a green square on a gradient"), mulberry32(1));
  assert.deepEqual(g.background, { kind: "gradient", direction: "vertical", from: "black", to: "white" });
  assert.equal(g.objects[0]!.motion, "still");
  const bad = (text: string, re: RegExp) =>
    assert.throws(
      () => sceneFromCaption(parseCaption(text), mulberry32(0)),
      (e: unknown) => e instanceof LavieError && e.code === "invalid_argument" && re.test(e.message),
    );
  bad("a circle moving left", /no colour; allowed: red, green/);
  bad("something red moving left", /no shape; allowed: circle, square, triangle/);
  bad("a white square on a white background", /white object cannot be seen on a white background/);
  bad("a red circle and a red square", /different colours/);
  bad("a red circle, a green square and a blue triangle", /1 or 2 objects; found 3/);
});
