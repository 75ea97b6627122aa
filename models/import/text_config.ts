/**
 * A published text encoder folder (stable-diffusion-v1-4/text_encoder, stable-diffusion-x4-upscaler/
 * text_encoder: transformers CLIPTextModel, config.json + pytorch_model.bin) mapped onto our text encoder.
 *
 *   const cfg = parseTextEncoderConfig(await readConfigJson(`${dir}/config.json`), `${dir}/config.json`);
 *   checkPositionIds(file, positionIds);  // the one buffer of the state dict, then ignored
 *   const src = new StateDictWeights(file, tensors, { ignore: TEXT_ENCODER_IGNORE });
 *
 * Fields and defaults are transformers 4.28.1 CLIPTextConfig's. A full CLIPConfig (model_type "clip")
 * is accepted through its text_config, as CLIPTextConfig.from_pretrained does.
 */
import { LavieError } from "../../core/errors.ts";
import type { TextEncoderConfig } from "../configs.ts";
import { contractFor } from "../contract.ts";
import {
  asObject,
  configError,
  fixedInt,
  type JsonObject,
  oneOf,
  positiveInt,
  positiveNumber,
} from "./json_fields.ts";

/** CLIPTextConfig defaults (transformers 4.28.1), used for absent fields. */
const DEFAULTS = {
  vocab_size: 49408,
  hidden_size: 512,
  intermediate_size: 2048,
  num_hidden_layers: 12,
  num_attention_heads: 8,
  hidden_act: "quick_gelu",
  layer_norm_eps: 1e-5,
} as const;

export const TEXT_ACTIVATIONS = ["quick_gelu", "gelu"] as const;

/**
 * State-dict keys of a CLIPTextModel that are not parameters of our graph: the position_ids buffer
 * (transformers < 4.31 saves it; it must be 0..76, see checkPositionIds).
 */
export const TEXT_ENCODER_IGNORE: readonly RegExp[] = [/^text_model\.embeddings\.position_ids$/];

export const POSITION_IDS_KEY = "text_model.embeddings.position_ids";

/** Parses a CLIPTextConfig (or a CLIPConfig's text_config) into our text encoder config. */
export function parseTextEncoderConfig(json: JsonObject, file: string): TextEncoderConfig {
  let o = json;
  if (json.model_type === "clip") o = asObject(json.text_config ?? {}, file, "text_config");
  else if (json.model_type !== undefined && json.model_type !== "clip_text_model")
    throw configError(
      file,
      "model_type",
      `must be "clip_text_model" (a CLIPTextModel) or "clip", got ${JSON.stringify(json.model_type)}`,
    );
  const positions = contractFor("text_encoder").inputs[0]!.shape[1] as number;
  const width = positiveInt(o, file, "hidden_size", DEFAULTS.hidden_size);
  const heads = positiveInt(o, file, "num_attention_heads", DEFAULTS.num_attention_heads);
  if (width % heads !== 0)
    throw configError(file, "num_attention_heads", `(${heads}) must divide hidden_size (${width})`);
  return {
    vocabSize: positiveInt(o, file, "vocab_size", DEFAULTS.vocab_size),
    positions: fixedInt(
      o,
      file,
      "max_position_embeddings",
      positions,
      "the text encoder contract takes 77 tokens",
    ),
    width,
    layers: positiveInt(o, file, "num_hidden_layers", DEFAULTS.num_hidden_layers),
    heads,
    mlp: positiveInt(o, file, "intermediate_size", DEFAULTS.intermediate_size),
    activation: oneOf(o, file, "hidden_act", TEXT_ACTIVATIONS, DEFAULTS.hidden_act),
    layerNormEps: positiveNumber(o, file, "layer_norm_eps", DEFAULTS.layer_norm_eps),
  };
}

/**
 * transformers embeds positions by gathering the saved position_ids buffer; our graph uses 0..L-1.
 * Refuses a checkpoint whose buffer says otherwise (some fine-tunes saved it corrupted as floats).
 */
export function checkPositionIds(file: string, values: ArrayLike<number | bigint>, positions = 77): void {
  const ok = values.length === positions && Array.from(values).every((v, i) => Number(v) === i);
  if (!ok)
    throw new LavieError(
      "failed_precondition",
      `${file}: "${POSITION_IDS_KEY}" must be 0..${positions - 1}; the checkpoint holds other values`,
      { field: POSITION_IDS_KEY },
    );
}
