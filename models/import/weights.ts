/**
 * Parameters of an imported network, taken key by key from a checkpoint's state dict.
 *
 *   const src = new StateDictWeights("lavie_base.pt", values, { ignore: [/^some\.buffer$/] });
 *   const g = buildUNet("base_unet", cfg, { seed: 0, weights: src });
 *   src.assertAllUsed(); // a key the network did not take is an error, unless deliberately ignored
 *
 * Every parameter the graph asks for must exist with exactly the asked shape; every key of the file
 * must be taken by the graph or match an `ignore` rule (buffers the official modules recompute, for
 * example). Errors name the file and the key.
 */
import { LavieError } from "../../core/errors.ts";
import type { WeightSource } from "../onnx/graph.ts";

/** A float tensor of a state dict, already converted to float32. */
export interface FloatTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

export interface StateDictWeightsOptions {
  /** Keys the network deliberately does not use (each rule says why in the caller). */
  ignore?: readonly RegExp[];
  /** Renames an official key to the name the graph uses (e.g. older diffusers attention names). */
  rename?: (key: string) => string;
}

export class StateDictWeights implements WeightSource {
  private readonly byName = new Map<string, { key: string; tensor: FloatTensor }>();
  private readonly used = new Set<string>();

  constructor(
    readonly file: string,
    tensors: ReadonlyMap<string, FloatTensor>,
    private readonly opts: StateDictWeightsOptions = {},
  ) {
    for (const [key, tensor] of tensors) {
      const name = opts.rename ? opts.rename(key) : key;
      const clash = this.byName.get(name);
      if (clash)
        throw new LavieError(
          "failed_precondition",
          `${file}: keys "${clash.key}" and "${key}" both map to parameter "${name}"`,
          { field: key },
        );
      this.byName.set(name, { key, tensor });
    }
  }

  take(name: string, shape: readonly number[]): Float32Array {
    const hit = this.byName.get(name);
    if (!hit)
      throw new LavieError("failed_precondition", `${this.file}: missing key "${name}" (shape [${shape}])`, {
        field: name,
      });
    const got = hit.tensor.shape;
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i]))
      throw new LavieError(
        "failed_precondition",
        `${this.file}: key "${hit.key}" has shape [${got}], the network needs [${shape}]`,
        { field: hit.key },
      );
    if (this.used.has(name))
      throw new LavieError("internal", `${this.file}: parameter "${name}" taken twice`, { field: name });
    this.used.add(name);
    return hit.tensor.data;
  }

  /** Keys of the file that the network did not take and no ignore rule covers. */
  unexpected(): string[] {
    const ignore = this.opts.ignore ?? [];
    const out: string[] = [];
    for (const [name, { key }] of this.byName) {
      if (this.used.has(name)) continue;
      if (ignore.some((r) => r.test(key))) continue;
      out.push(key);
    }
    return out.sort();
  }

  /** Throws when the file holds keys the network did not use (listing up to 10 of them). */
  assertAllUsed(): void {
    const extra = this.unexpected();
    if (extra.length === 0) return;
    const shown = extra.slice(0, 10).map((k) => `"${k}"`);
    const more = extra.length > 10 ? ` and ${extra.length - 10} more` : "";
    throw new LavieError(
      "failed_precondition",
      `${this.file}: unexpected key${extra.length > 1 ? "s" : ""} ${shown.join(", ")}${more} ` +
        "(the checkpoint does not match the configured network)",
      { field: extra[0] },
    );
  }
}
