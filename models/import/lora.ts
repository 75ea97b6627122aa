/**
 * LoRA merging for personalised video (LaVie paper, section 5: LoRA on the spatial layers of the base
 * model, temporal modules frozen). A LoRA file for Stable Diffusion 1.x is merged into the base UNet
 * (and, when it carries text-encoder weights, into the CLIP text encoder) before the graph is built:
 *
 *   W' = W + scale * (up @ down)      (linear: up [out, r], down [r, in]; 1x1 and kxk convs alike)
 *
 * Layouts understood (the common ones for SD 1.x):
 * - kohya / A1111: "lora_unet_<key with _>.lora_down.weight", ".lora_up.weight", ".alpha" (scale is
 *   multiplied by alpha / rank), "lora_te_<key with _>" for the text encoder;
 * - diffusers attention processors (0.14-0.16): "<block>.attn1.processor.to_q_lora.down.weight", ...;
 * - diffusers / PEFT (later): "unet.<key>.lora.down.weight" or "unet.<key>.lora_A.weight" /
 *   ".lora_B.weight", "text_encoder.<key>..." for the text encoder.
 * A LoRA key that names no layer of the network, or a temporal layer, is refused with its name.
 */
import { LavieError } from "../../core/errors.ts";
import type { FloatTensor } from "./weights.ts";

export type LoraTarget = "unet" | "text_encoder";

/** One low-rank update of a weight `key` (an official state-dict key). */
export interface LoraPair {
  target: LoraTarget;
  key: string;
  down: FloatTensor;
  up: FloatTensor;
  /** alpha / rank when the file stores alpha, else 1. */
  alphaScale: number;
}

/** Layers LaVie keeps frozen: LoRA must never change them. */
const TEMPORAL = /(^|\.)(attn_temp|norm_temp|attn_temporal|norm_temporal|temporal_|resblock_temporal)/;

function loraError(file: string, key: string, msg: string): LavieError {
  return new LavieError("invalid_argument", `${file}: LoRA key "${key}": ${msg}`, { field: key });
}

/** Splits a LoRA name into (target, layer path in the file's spelling, role). */
function parseKey(key: string): { target: LoraTarget; layer: string; role: "down" | "up" | "alpha" } | null {
  const kohya = /^lora_(unet|te)_(.+?)\.(lora_down\.weight|lora_up\.weight|alpha)$/.exec(key);
  if (kohya) {
    const role = kohya[3] === "alpha" ? "alpha" : kohya[3] === "lora_down.weight" ? "down" : "up";
    return { target: kohya[1] === "te" ? "text_encoder" : "unet", layer: kohya[2]!, role };
  }
  const procs = /^(.+)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$/.exec(key);
  if (procs) {
    const proj = procs[2] === "to_out" ? "to_out.0" : procs[2]!;
    return { target: "unet", layer: `${procs[1]}.${proj}`, role: procs[3] as "down" | "up" };
  }
  const peft = /^(?:(unet|text_encoder)\.)?(.+?)\.(?:lora\.(down|up)|lora_(A|B))\.weight$/.exec(key);
  if (peft) {
    const role = peft[3] ? (peft[3] as "down" | "up") : peft[4] === "A" ? "down" : "up";
    return { target: peft[1] === "text_encoder" ? "text_encoder" : "unet", layer: peft[2]!, role };
  }
  const alpha = /^(?:(unet|text_encoder)\.)?(.+?)\.alpha$/.exec(key);
  if (alpha)
    return { target: alpha[1] === "text_encoder" ? "text_encoder" : "unet", layer: alpha[2]!, role: "alpha" };
  return null;
}

/**
 * Groups a LoRA file's tensors into update pairs on official keys. `weightKeys[target]` are the
 * network's weight keys ("down_blocks.0....to_q.weight"); kohya's underscore names are resolved
 * against them (an underscore name is ambiguous on its own).
 */
export function loraPairs(
  file: string,
  tensors: ReadonlyMap<string, FloatTensor>,
  weightKeys: Readonly<Record<LoraTarget, readonly string[]>>,
): LoraPair[] {
  const resolve: Record<LoraTarget, Map<string, string>> = { unet: new Map(), text_encoder: new Map() };
  for (const target of ["unet", "text_encoder"] as const) {
    for (const k of weightKeys[target]) {
      if (!k.endsWith(".weight")) continue;
      const layer = k.slice(0, -".weight".length);
      resolve[target].set(layer, k);
      resolve[target].set(layer.replaceAll(".", "_"), k);
    }
  }
  const groups = new Map<
    string,
    { target: LoraTarget; key: string; down?: FloatTensor; up?: FloatTensor; alpha?: number }
  >();
  for (const [name, t] of tensors) {
    const p = parseKey(name);
    if (!p) throw loraError(file, name, "not a LoRA tensor of a known layout (kohya, diffusers, PEFT)");
    const key = resolve[p.target].get(p.layer);
    if (!key)
      throw loraError(
        file,
        name,
        `names no layer of the ${p.target === "unet" ? "base UNet" : "text encoder"}`,
      );
    if (TEMPORAL.test(key)) throw loraError(file, name, "targets a temporal layer, which LaVie keeps frozen");
    const id = `${p.target}:${key}`;
    const g = groups.get(id) ?? { target: p.target, key };
    if (p.role === "alpha") {
      if (t.data.length !== 1) throw loraError(file, name, `alpha must be a scalar; got shape [${t.shape}]`);
      g.alpha = t.data[0]!;
    } else g[p.role] = t;
    groups.set(id, g);
  }
  const out: LoraPair[] = [];
  for (const g of groups.values()) {
    if (!g.down || !g.up) throw loraError(file, g.key, `needs both a down and an up matrix`);
    const rank = g.down.shape[0]!;
    if (g.up.shape[1] !== rank)
      throw loraError(file, g.key, `up [${g.up.shape}] and down [${g.down.shape}] disagree on the rank`);
    out.push({
      target: g.target,
      key: g.key,
      down: g.down,
      up: g.up,
      alphaScale: g.alpha === undefined ? 1 : g.alpha / rank,
    });
  }
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/**
 * Returns W + scale * alphaScale * (up @ down) for one pair; W [out, in] or [out, in, kh, kw].
 * down is [r, in] or [r, in, kh, kw]; up is [out, r] or [out, r, 1, 1].
 */
export function mergePair(file: string, w: FloatTensor, pair: LoraPair, scale: number): FloatTensor {
  const out = w.shape[0]!;
  const rank = pair.down.shape[0]!;
  const inner = w.data.length / out; // in * kh * kw
  if (
    pair.up.shape[0] !== out ||
    pair.up.data.length !== out * rank ||
    pair.down.data.length !== rank * inner
  )
    throw loraError(
      file,
      pair.key,
      `up [${pair.up.shape}] x down [${pair.down.shape}] does not fit the weight [${w.shape}]`,
    );
  const s = scale * pair.alphaScale;
  const data = Float32Array.from(w.data);
  const up = pair.up.data;
  const down = pair.down.data;
  for (let o = 0; o < out; o++) {
    for (let r = 0; r < rank; r++) {
      const u = s * up[o * rank + r]!;
      if (u === 0) continue;
      const row = o * inner;
      const drow = r * inner;
      for (let i = 0; i < inner; i++) data[row + i]! += u * down[drow + i]!;
    }
  }
  return { shape: w.shape, data };
}

/** Parses "FILE[:SCALE]" (scale default 1; a finite number). */
export function parseLoraSpec(spec: string, field = "lora"): { file: string; scale: number } {
  const m = /^(.*?)(?::(-?[0-9]*\.?[0-9]+(?:e-?[0-9]+)?))?$/i.exec(spec);
  const file = m?.[1] ?? "";
  if (!file)
    throw new LavieError("invalid_argument", `${field}: expected FILE[:SCALE]; got "${spec}"`, { field });
  const scale = m?.[2] === undefined ? 1 : Number(m[2]);
  if (!Number.isFinite(scale))
    throw new LavieError("invalid_argument", `${field}: scale must be a finite number; got "${m?.[2]}"`, {
      field,
    });
  return { file, scale };
}

/**
 * Merges every pair of `target` into `state` (in place) and returns the keys it changed, sorted.
 * A pair whose key is not in `state` is an error naming it.
 */
export function applyLora(
  file: string,
  state: Map<string, FloatTensor>,
  pairs: readonly LoraPair[],
  target: LoraTarget,
  scale: number,
): string[] {
  const changed: string[] = [];
  for (const p of pairs) {
    if (p.target !== target) continue;
    const w = state.get(p.key);
    if (!w) throw loraError(file, p.key, "its weight is not in the checkpoint");
    state.set(p.key, mergePair(file, w, p, scale));
    changed.push(p.key);
  }
  return changed;
}
