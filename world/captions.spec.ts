import assert from "node:assert/strict";
import { test } from "node:test";
import { mulberry32 } from "../core/prng.ts";
import { captionOf, captionsOf } from "./captions.ts";
import { parseCaption } from "./parse.ts";
import { sampleScenes } from "./sample.ts";
import { type Scene, sizeClassOf, speedClassOf } from "./scene.ts";

const scenes = sampleScenes(5, 300, { split: "any", twoObjects: 0.4 });

function expectAttributes(scene: Scene, text: string, complete: boolean): void {
  const p = parseCaption(text);
  assert.equal(p.objects.length, scene.objects.length, text);
  assert.deepEqual(p.unknown, [], text);
  scene.objects.forEach((o, i) => {
    const got = p.objects[i]!;
    assert.equal(got.colour, o.colour, text);
    assert.equal(got.shape, o.shape, text);
    assert.equal(got.motion, o.motion, text);
    const size = sizeClassOf(o.size);
    const speed = speedClassOf(o);
    if (complete || got.size !== undefined)
      assert.equal(got.size, size === "medium" ? undefined : size, text);
    if (complete || got.speed !== undefined) assert.equal(got.speed, speed, text);
  });
  const b = scene.background;
  if (complete || p.background) {
    assert.ok(p.background, text);
    assert.equal(p.background.kind, b.kind, text);
    if (b.kind === "plain") assert.equal(p.background.tone, b.tone, text);
    else {
      assert.equal(p.background.from, b.from, text);
      assert.equal(p.background.to, b.to, text);
      if (complete) assert.equal(p.background.direction, b.direction, text);
    }
  }
}

test("canonical captions state every attribute and parse back to them", () => {
  for (const s of scenes) expectAttributes(s, captionOf(s), true);
  const one = scenes.find((s) => s.objects.length === 1 && s.objects[0]!.motion !== "still")!;
  assert.match(
    captionOf(one),
    /^an? (small |big )?\w+ (circle|square|triangle) moving \w+ (slowly|quickly) on a /,
  );
});

test("random phrasings parse back to what they state (and vary)", () => {
  const rng = mulberry32(9);
  const seen = new Set<string>();
  for (const s of scenes) {
    for (const text of captionsOf(s, 4, rng).slice(1)) {
      expectAttributes(s, text, false);
      seen.add(text.split(" ").slice(2, 4).join(" "));
    }
  }
  assert.ok(seen.size > 50, `only ${seen.size} distinct phrasings`);
});

test("people's phrasings: synonyms, word order, two objects, backgrounds, unknown words", () => {
  const cases: [string, object][] = [
    ["a red circle moving right", { objects: [{ colour: "red", shape: "circle", motion: "right" }] }],
    [
      "A blue square moves up on a black background.",
      {
        objects: [{ colour: "blue", shape: "square", motion: "up" }],
        background: { kind: "plain", tone: "black" },
      },
    ],
    [
      "a small yellow triangle staying still",
      { objects: [{ colour: "yellow", shape: "triangle", motion: "still", size: "small" }] },
    ],
    [
      "a red circle moving left and a green square moving down",
      {
        objects: [
          { colour: "red", shape: "circle", motion: "left" },
          { colour: "green", shape: "square", motion: "down" },
        ],
      },
    ],
    [
      "a red ball and a blue box falling quickly",
      {
        objects: [
          { colour: "red", shape: "circle", motion: "down", speed: "fast" },
          { colour: "blue", shape: "square", motion: "down", speed: "fast" },
        ],
      },
    ],
    [
      "against a grey backdrop, a big violet disk slowly drifts to the left",
      {
        objects: [{ colour: "purple", shape: "circle", motion: "left", size: "big", speed: "slow" }],
        background: { kind: "plain", tone: "gray" },
      },
    ],
    [
      "the white triangle doesn't move, on black",
      {
        objects: [{ colour: "white", shape: "triangle", motion: "still" }],
        background: { kind: "plain", tone: "black" },
      },
    ],
    [
      "an orange square rising over a vertical gradient from white to black",
      {
        objects: [{ colour: "orange", shape: "square", motion: "up" }],
        background: { kind: "gradient", from: "white", to: "black", direction: "vertical" },
      },
    ],
    [
      "on a gray-to-white gradient: one green triangle sliding rightwards, very smoothly",
      {
        objects: [{ colour: "green", shape: "triangle", motion: "right" }],
        background: { kind: "gradient", from: "gray", to: "white" },
      },
    ],
  ];
  for (const [text, want] of cases) {
    const { unknown, ...got } = parseCaption(text);
    assert.deepEqual(got, want, text);
    if (text.includes("very smoothly")) assert.deepEqual(unknown, ["very", "smoothly"]);
  }
});
