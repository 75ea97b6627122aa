/**
 * NetworkExecutor over a validated model directory: network ids -> ONNX files run by an ORT worker
 * pool, and text -> token ids with each text encoder's tokenizer.
 */

import type { NetworkExecutor } from "../coordinator/executor/local.ts";
import type { NetworkId } from "../coordinator/plan/types.ts";
import { LavieError } from "../core/errors.ts";
import type { Tensor } from "../core/tensor.ts";
import type { ClipTokenizer } from "../models/tokenizer/index.ts";
import type { Feed, NetworkRunner } from "./ort/protocol.ts";

export class OrtNetworks implements NetworkExecutor {
  constructor(
    private readonly runner: NetworkRunner,
    private readonly modelPaths: Readonly<Partial<Record<NetworkId, string>>>,
    private readonly tokenizers: Readonly<Partial<Record<NetworkId, ClipTokenizer>>>,
  ) {}

  async run(
    network: NetworkId,
    feeds: Record<string, Feed>,
    signal?: AbortSignal,
  ): Promise<Record<string, Tensor>> {
    const path = this.modelPaths[network];
    if (!path) throw new LavieError("failed_precondition", `the model directory has no network ${network}`);
    return this.runner.run(path, feeds, signal ? { signal } : {});
  }

  tokenize(network: NetworkId, text: string): BigInt64Array {
    const tok = this.tokenizers[network];
    if (!tok) throw new LavieError("failed_precondition", `no tokenizer for text network ${network}`);
    return tok.encode(text).ids;
  }
}
