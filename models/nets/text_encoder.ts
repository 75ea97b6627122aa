/**
 * CLIP text transformer, as Hugging Face transformers 4.28.1 CLIPTextModel computes it, as an ONNX graph:
 *
 *   input_ids [B,77] int64 -> token_embedding[ids] + position_embedding[0..76]
 *     -> layers x (x + out_proj(attn(layer_norm1(x)));  x + fc2(act(fc1(layer_norm2(x)))))
 *     -> final_layer_norm -> last_hidden_state [B,77,width]
 *
 * Attention: q/k/v/out projections with bias, q scaled by head_dim^-0.5, causal mask (a token sees
 * itself and earlier tokens), softmax, no padding mask: LaVie calls the model with input_ids only
 * (base/ and interpolation/ models/clip.py take `last_hidden_state`; the VSR pipeline's _encode_prompt
 * takes `outputs[0]`, the same tensor, and passes no mask since the config has no use_attention_mask).
 * Position ids are 0..76: the state dict's `text_model.embeddings.position_ids` buffer is not a
 * parameter here (the importer checks and skips it). LayerNorm eps is the config's layer_norm_eps.
 *
 * Both text encoders of the cascade use it:
 * - base / interpolation: stable-diffusion-v1-4/text_encoder, CLIP ViT-L/14 text (width 768, 12 layers,
 *   12 heads, quick_gelu), 123,060,480 parameters.
 * - VSR: stable-diffusion-x4-upscaler/text_encoder, OpenCLIP ViT-H/14 text with its last layer dropped
 *   (width 1024, 23 layers, 16 heads, exact erf gelu), 340,387,840 parameters. `last_hidden_state` of that
 *   23-layer model is the penultimate OpenCLIP layer followed by the final LayerNorm, as SD 2 trained it.
 *
 * Parameter names and shapes are the state-dict keys (text_model.encoder.layers.N.self_attn.q_proj.weight
 * [out, in], ...), so an imported checkpoint maps one to one.
 */

import { invalidArgument } from "../../core/errors.ts";
import type { BuildOptions, TextEncoderConfig } from "../configs.ts";
import { contractFor } from "../contract.ts";
import { attr, GraphBuilder, type Value } from "../onnx/graph.ts";
import { sdpa, splitHeads } from "./attention.ts";
import { gelu, layerNorm, linear, quickGelu } from "./layers.ts";

/**
 * Additive causal mask value. transformers fills with float32's minimum; any value this negative gives
 * the same softmax (exp underflows to exactly 0) and stays finite when added to the logits.
 */
export const MASK_VALUE = -1e9;

/** [L, L] additive causal mask: 0 on and below the diagonal, MASK_VALUE above it. */
export function causalMask(length: number): Float32Array {
  const m = new Float32Array(length * length);
  for (let i = 0; i < length; i++) for (let j = i + 1; j < length; j++) m[i * length + j] = MASK_VALUE;
  return m;
}

function validate(cfg: TextEncoderConfig): void {
  const fixed = contractFor("text_encoder").inputs[0]!.shape[1];
  if (cfg.positions !== fixed)
    throw invalidArgument("text encoder positions", `must be ${fixed} (the contract), got ${cfg.positions}`);
  if (cfg.layers < 1) throw invalidArgument("text encoder layers", `must be >= 1, got ${cfg.layers}`);
  if (cfg.heads < 1 || cfg.width % cfg.heads !== 0)
    throw invalidArgument("text encoder heads", `width ${cfg.width} is not divisible by heads ${cfg.heads}`);
  if (!(cfg.layerNormEps > 0))
    throw invalidArgument("text encoder layerNormEps", `must be > 0, got ${cfg.layerNormEps}`);
}

/** CLIPAttention: q/k/v/out projections with bias, additive causal mask on the logits. */
function selfAttention(
  g: GraphBuilder,
  x: Value,
  cfg: TextEncoderConfig,
  mask: Value,
  outScale: number,
): Value {
  const d = cfg.width / cfg.heads;
  return g.scope("self_attn", () => {
    const heads = (name: string) => splitHeads(g, linear(g, name, x, cfg.width, cfg.width), cfg.heads, d);
    const o = sdpa(g, heads("q_proj"), heads("k_proj"), heads("v_proj"), cfg.heads, d, mask);
    return linear(g, "out_proj", o, cfg.width, cfg.width, { scale: outScale });
  });
}

/** CLIPEncoderLayer: pre-norm attention and MLP, each with a residual. */
function encoderLayer(
  g: GraphBuilder,
  x: Value,
  cfg: TextEncoderConfig,
  mask: Value,
  outScale: number,
): Value {
  const eps = cfg.layerNormEps;
  const h = selfAttention(g, layerNorm(g, "layer_norm1", x, cfg.width, eps), cfg, mask, outScale);
  x = g.op("Add", [x, h]);
  const normed = layerNorm(g, "layer_norm2", x, cfg.width, eps);
  const m = g.scope("mlp", () => {
    const a = linear(g, "fc1", normed, cfg.width, cfg.mlp);
    const act = cfg.activation === "quick_gelu" ? quickGelu(g, a) : gelu(g, a);
    return linear(g, "fc2", act, cfg.mlp, cfg.width, { scale: outScale });
  });
  return g.op("Add", [x, m]);
}

/** Builds the text encoder graph: input_ids [B,77] int64 -> last_hidden_state [B,77,width] float32. */
export function buildTextEncoder(cfg: TextEncoderConfig, opts: BuildOptions): GraphBuilder {
  validate(cfg);
  const contract = contractFor("text_encoder", { width: cfg.width });
  const input = contract.inputs[0]!;
  const output = contract.outputs[0]!;
  const g = new GraphBuilder({
    name: "text_encoder",
    seed: opts.seed,
    materialize: opts.materialize ?? true,
    weights: opts.weights,
    weightDtype: opts.weightDtype ?? "float32",
    docString: `CLIP text encoder: width ${cfg.width}, ${cfg.layers} layers, ${cfg.heads} heads, ${cfg.activation}`,
  });
  const ids = g.input(input.name, "int64", input.shape);
  // Seeded (untrained) weights only: residual branches start scaled by 1/sqrt(2 * layers) so that
  // activations stay near unit scale. Imported weights are used as they are.
  const outScale = 1 / Math.sqrt(2 * cfg.layers);
  const hidden = g.scope("text_model", () => {
    let x = g.scope("embeddings", () => {
      const tok = g.scope("token_embedding", () =>
        g.param("weight", [cfg.vocabSize, cfg.width], { kind: "normal", std: 0.02 }),
      );
      const pos = g.scope("position_embedding", () =>
        g.param("weight", [cfg.positions, cfg.width], { kind: "normal", std: 0.01 }),
      );
      // All 77 positions are always present, so adding the whole table equals gathering arange(77).
      return g.op("Add", [g.op("Gather", [tok, ids], { axis: attr.i(0) }), pos]);
    });
    const mask = g.constF(causalMask(cfg.positions), [cfg.positions, cfg.positions]);
    g.scope("encoder", () => {
      for (let i = 0; i < cfg.layers; i++) {
        x = g.scope(`layers.${i}`, () => encoderLayer(g, x, cfg, mask, outScale));
      }
    });
    return layerNorm(g, "final_layer_norm", x, cfg.width, cfg.layerNormEps);
  });
  g.output(hidden, output.name, "float32", output.shape);
  return g;
}
