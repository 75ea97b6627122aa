/**
 * CLIP text transformer (Hugging Face CLIPTextModel) as an ONNX graph:
 *
 *   input_ids [B,77] int64 -> token embedding + position embedding
 *     -> layers x (LN -> causal multi-head self-attention (q/k/v/out with bias) -> +;
 *                  LN -> fc1 -> quick_gelu | gelu -> fc2 -> +)
 *     -> final LayerNorm -> last_hidden_state [B,77,width]
 *
 * Both text encoders of the cascade use it:
 * - base / interpolation: CLIP ViT-L/14 text (width 768, 12 layers, quick_gelu), 123,060,480 parameters.
 * - VSR: the x4 upscaler's text encoder, OpenCLIP ViT-H/14 text with its last layer dropped (width 1024,
 *   23 of 24 layers, exact gelu), 340,387,840 parameters. The diffusers upscaler pipeline uses
 *   `last_hidden_state` of that 23-layer CLIPTextModel, i.e. the penultimate OpenCLIP layer's output
 *   *followed by the final LayerNorm* — the same as ldm's FrozenOpenCLIPEmbedder(layer="penultimate"),
 *   which applies ln_final after stopping one layer early. So `layers: 23` with the final LN is exact.
 *
 * Parameter names follow the HF state dict (text_model.encoder.layers.N.self_attn.q_proj.weight, ...);
 * linear weights are stored [in, out] (transposed from PyTorch).
 */

import type { BuildOptions, TextEncoderConfig } from "../configs.ts";
import { contractFor } from "../contract.ts";
import { attr, GraphBuilder, type Value } from "../onnx/graph.ts";
import { sdpa } from "./attention.ts";
import { gelu, layerNorm, linear, quickGelu, reshape, transpose } from "./layers.ts";

/** Additive causal mask value: large and finite, so softmax never sees inf - inf. */
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
    throw new Error(`text encoder: positions must be ${fixed}, got ${cfg.positions}`);
  if (cfg.width % cfg.heads !== 0)
    throw new Error(`text encoder: width ${cfg.width} is not divisible by heads ${cfg.heads}`);
  if (cfg.layers < 1) throw new Error(`text encoder: layers must be >= 1, got ${cfg.layers}`);
}

/** CLIP self-attention: q/k/v/out projections all with bias, additive mask on the logits. */
function selfAttention(
  g: GraphBuilder,
  x: Value,
  cfg: TextEncoderConfig,
  mask: Value,
  outScale: number,
): Value {
  const d = cfg.width / cfg.heads;
  return g.scope("self_attn", () => {
    const split = (name: string) =>
      transpose(g, reshape(g, linear(g, name, x, cfg.width, cfg.width), [0, 0, cfg.heads, d]), [0, 2, 1, 3]);
    const q = split("q_proj");
    const k = split("k_proj");
    const v = split("v_proj");
    const o = sdpa(g, q, k, v, cfg.heads, d, mask);
    return linear(g, "out_proj", o, cfg.width, cfg.width, { scale: outScale });
  });
}

function encoderLayer(
  g: GraphBuilder,
  x: Value,
  cfg: TextEncoderConfig,
  mask: Value,
  outScale: number,
): Value {
  const h = selfAttention(g, layerNorm(g, "layer_norm1", x, cfg.width), cfg, mask, outScale);
  x = g.op("Add", [x, h]);
  const normed = layerNorm(g, "layer_norm2", x, cfg.width);
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
    docString: `CLIP text encoder: width ${cfg.width}, ${cfg.layers} layers, ${cfg.heads} heads, ${cfg.activation}`,
  });
  const ids = g.input(input.name, "int64", input.shape);
  // Residual branches scaled by 1/sqrt(2 * layers) keep seeded (untrained) activations near unit scale.
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
    return layerNorm(g, "final_layer_norm", x, cfg.width);
  });
  g.output(hidden, output.name, "float32", output.shape);
  return g;
}
