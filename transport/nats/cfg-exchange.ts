/**
 * The CFG exchange over NATS JetStream: the two members of a CFG gang (BaseDenoiseTask.cfg), on two
 * runners, swap their UNet outputs every denoising step.
 *
 *   const cfg = await NatsCfgExchange.open(nats); // NatsClients from connectNats
 *   const ex = cfg.member({ jobId, gang: "base_cfg", attempt: 2, branch: "cond" });
 *   const theirs = await ex.swap(step, mine, signal);
 *
 * Each member publishes its step output to `lavie.cfg.<jobId>.<gang>.<attempt>.<step>.<branch>` in
 * a memory stream (LAVIE_CFG, subjects `lavie.cfg.>`, short max age, created on demand) and reads
 * the peer's with an ordered consumer filtered to the peer's exact subject, so a member that gets
 * there later still finds the message. An output larger than the server's max payload goes as
 * several messages on the same subject (header Lavie-Part "k/n"). A peer message not seen within
 * `timeoutMs` fails the task as retryable (unavailable): the dispatcher then retries the whole gang
 * under a new attempt number, so the subjects of a failed attempt are never read again.
 */
import {
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  StorageType,
} from "@nats-io/jetstream";
import { headers, nanos } from "@nats-io/transport-node";
import { LavieError } from "../../core/errors.ts";
import type { CfgExchange } from "../../stage-runners/tasks/execute.ts";
import type { NatsClients } from "./connect.ts";

export const CFG_STREAM = "LAVIE_CFG";
export const CFG_SUBJECT_PREFIX = "lavie.cfg";

export interface NatsCfgExchangeOptions {
  /** Stream name (default LAVIE_CFG). */
  stream?: string;
  /** How long step messages are kept (default 120 s). */
  maxAgeMs?: number;
  /** How long a member waits for its peer's output of a step (default 60 s). */
  timeoutMs?: number;
  /** Bytes per message at most (default: the server's max payload less 4 KiB for headers). */
  maxMessageBytes?: number;
}

export interface CfgMember {
  jobId: string;
  gang: string;
  attempt: number;
  branch: "uncond" | "cond";
}

/** A subject token: no dots, wildcards or whitespace. */
function token(field: string, v: string): string {
  if (!/^[A-Za-z0-9_-]{1,128}$/.test(v)) {
    throw new LavieError("invalid_argument", `${field}: "${v}" is not usable in a NATS subject`, { field });
  }
  return v;
}

export function cfgSubject(m: CfgMember, step: number, branch: "uncond" | "cond" = m.branch): string {
  return [
    CFG_SUBJECT_PREFIX,
    token("job_id", m.jobId),
    token("cfg.gang", m.gang),
    String(m.attempt),
    String(step),
    branch,
  ].join(".");
}

export class NatsCfgExchange {
  private constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly stream: string,
    private readonly timeoutMs: number,
    private readonly maxBytes: number,
  ) {}

  /** Creates the stream when it does not exist (memory storage: nothing to keep across restarts). */
  static async open(
    { nc, js, jsm }: Pick<NatsClients, "nc" | "js" | "jsm">,
    opts: NatsCfgExchangeOptions = {},
  ): Promise<NatsCfgExchange> {
    const stream = opts.stream ?? CFG_STREAM;
    const config = {
      name: stream,
      subjects: [`${CFG_SUBJECT_PREFIX}.>`],
      storage: StorageType.Memory,
      max_age: nanos(opts.maxAgeMs ?? 120_000),
      num_replicas: 1,
    };
    try {
      await jsm.streams.info(stream);
    } catch {
      try {
        await jsm.streams.add(config);
      } catch (err) {
        // Another process created it meanwhile.
        await jsm.streams.info(stream).catch(() => {
          throw new LavieError("unavailable", `cannot create the CFG stream ${stream}: ${String(err)}`, {
            cause: err,
          });
        });
      }
    }
    const maxPayload = nc.info?.max_payload;
    const maxBytes = opts.maxMessageBytes ?? Math.max(1024, (maxPayload ?? 1024 * 1024) - 4096);
    return new NatsCfgExchange(js, jsm, stream, opts.timeoutMs ?? 60_000, maxBytes);
  }

  /** The exchange of one gang member (one task attempt). */
  member(m: CfgMember): CfgExchange {
    const peer = m.branch === "uncond" ? "cond" : "uncond";
    return {
      swap: async (step, mine, signal) => {
        await this.publish(cfgSubject(m, step), mine);
        const subject = cfgSubject(m, step, peer);
        const theirs = await this.receive(subject, signal, m, step);
        // Only this member reads the peer's message: drop it now (max age is the backstop).
        void this.jsm.streams.purge(this.stream, { filter: subject }).catch(() => {});
        return theirs;
      },
    };
  }

  private async publish(subject: string, data: Float32Array): Promise<void> {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const parts = Math.max(1, Math.ceil(bytes.length / this.maxBytes));
    for (let k = 0; k < parts; k++) {
      const h = headers();
      h.set("Lavie-Part", `${k + 1}/${parts}`);
      try {
        await this.js.publish(subject, bytes.slice(k * this.maxBytes, (k + 1) * this.maxBytes), {
          headers: h,
        });
      } catch (err) {
        throw new LavieError("unavailable", `CFG exchange: cannot publish ${subject}: ${String(err)}`, {
          cause: err,
        });
      }
    }
  }

  private async receive(
    subject: string,
    signal: AbortSignal | undefined,
    m: CfgMember,
    step: number,
  ): Promise<Float32Array> {
    const deadline = Date.now() + this.timeoutMs;
    const consumer = await this.js.consumers.get(this.stream, {
      filter_subjects: subject,
      deliver_policy: DeliverPolicy.All,
    });
    const chunks: Uint8Array[] = [];
    let total = 0;
    let parts = 0;
    try {
      for (;;) {
        if (signal?.aborted) throw LavieError.from(signal.reason ?? new LavieError("cancelled", "cancelled"));
        const left = deadline - Date.now();
        if (left <= 0) {
          throw new LavieError(
            "unavailable",
            `CFG exchange: the ${subject.split(".").at(-1)} branch of job ${m.jobId} (attempt ${m.attempt}) ` +
              `sent no output for step ${step} within ${Math.round(this.timeoutMs / 1000)} s`,
          );
        }
        const msg = await abortable(
          consumer.next({ expires: Math.max(1000, Math.min(left, 5_000)) }),
          signal,
        );
        if (!msg) continue;
        const [k, n] = partOf(msg);
        if (k !== chunks.length + 1) continue; // a duplicate of a part already read
        parts = n;
        chunks.push(msg.data);
        total += msg.data.length;
        if (chunks.length === parts) break;
      }
    } finally {
      void consumer.delete().catch(() => {});
    }
    const all = new Uint8Array(total);
    let off = 0;
    for (const c of chunks) {
      all.set(c, off);
      off += c.length;
    }
    if (total % 4 !== 0) throw new LavieError("internal", `CFG exchange: ${subject} has ${total} bytes`);
    return new Float32Array(all.buffer, 0, total / 4);
  }
}

function partOf(msg: JsMsg): [number, number] {
  const v = msg.headers?.get("Lavie-Part") ?? "1/1";
  const m = /^(\d+)\/(\d+)$/.exec(v);
  return m ? [Number(m[1]), Number(m[2])] : [1, 1];
}

function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(LavieError.from(signal.reason ?? new LavieError("cancelled", "cancelled")));
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}
