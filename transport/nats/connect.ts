/**
 * Connections to NATS for the coordinator and the stage runners. Clients reconnect forever with a
 * short wait, so a nats-server restart is a pause, not a failure; JetStream state (file storage)
 * survives it.
 */
import {
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { LavieError } from "../../core/errors.ts";

export type { NatsConnection };

export interface NatsConnectOptions {
  /** Client name shown by the server (e.g. "coordinator", "runner-<id>"). */
  name: string;
  /** Milliseconds between reconnect attempts (default 250). */
  reconnectTimeWait?: number;
  /** Milliseconds to wait for the first connection (default 5000). */
  timeout?: number;
  /** Timeout for JetStream API calls and publish acks (default 10000 ms). */
  jsTimeout?: number;
}

export interface NatsClients {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly kvm: Kvm;
  readonly objm: Objm;
  /** Drains subscriptions and closes the connection. */
  close(): Promise<void>;
}

export async function connectNats(url: string | string[], opts: NatsConnectOptions): Promise<NatsClients> {
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: url,
      name: opts.name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: opts.reconnectTimeWait ?? 250,
      reconnectJitter: 50,
      timeout: opts.timeout ?? 5_000,
      waitOnFirstConnect: false,
    });
  } catch (err) {
    throw new LavieError(
      "unavailable",
      `cannot connect to NATS at ${String(url)}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  const timeout = opts.jsTimeout ?? 10_000;
  const js = jetstream(nc, { timeout });
  const jsm = await jetstreamManager(nc, { timeout });
  return {
    nc,
    js,
    jsm,
    kvm: new Kvm(js),
    objm: new Objm(js),
    async close() {
      if (nc.isClosed()) return;
      await nc.drain().catch(() => nc.close());
    },
  };
}

/** True for JetStream "wrong last sequence" errors (optimistic-concurrency conflicts). */
export function isWrongLastSequence(err: unknown): boolean {
  if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamWrongLastSequence) return true;
  const msg = err instanceof Error ? err.message : String(err);
  return /wrong last sequence/i.test(msg);
}
