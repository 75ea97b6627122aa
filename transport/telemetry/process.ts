/**
 * A process's telemetry, started by its main.ts: the OpenTelemetry SDK (tracing.ts, from OTEL_*)
 * and the /metrics endpoint on LAVIE_METRICS_HOST:LAVIE_METRICS_PORT (0 = off). A metrics port
 * that is taken is reported and skipped: telemetry never stops the process from serving.
 */
import { invalidArgument } from "../../core/errors.ts";
import { metrics } from "./metrics.ts";
import { type MetricsServer, startMetricsServer } from "./metrics-server.ts";
import { startTelemetry } from "./tracing.ts";

export interface ProcessTelemetryOptions {
  serviceName: string;
  /** Default metrics port (LAVIE_METRICS_PORT overrides; 0 = no endpoint). */
  defaultMetricsPort: number;
  /** Default metrics host (LAVIE_METRICS_HOST overrides). */
  defaultMetricsHost: string;
  log: (line: string) => void;
  env?: NodeJS.ProcessEnv;
}

export interface ProcessTelemetry {
  /** host:port of /metrics, or "" when off. */
  readonly metricsAddress: string;
  shutdown(): Promise<void>;
}

/** Reads LAVIE_METRICS_PORT (throws naming the variable when malformed). */
export function metricsPortOf(env: NodeJS.ProcessEnv, dflt: number): number {
  const v = env.LAVIE_METRICS_PORT?.trim();
  if (!v) return dflt;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 65535)
    throw invalidArgument("LAVIE_METRICS_PORT", `must be an integer in 0..65535, got "${v}"`);
  return n;
}

export async function startProcessTelemetry(opts: ProcessTelemetryOptions): Promise<ProcessTelemetry> {
  const env = opts.env ?? process.env;
  const port = metricsPortOf(env, opts.defaultMetricsPort);
  const host = env.LAVIE_METRICS_HOST?.trim() || opts.defaultMetricsHost;
  const tel = await startTelemetry(opts.serviceName, env);
  let server: MetricsServer | null = null;
  if (port !== 0) {
    try {
      server = await startMetricsServer(metrics.withProcessMetrics().registry, host, port);
    } catch (err) {
      opts.log(
        `${opts.serviceName}: metrics endpoint not started on ${host}:${port}: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }
  return {
    metricsAddress: server?.address ?? "",
    shutdown: async () => {
      await server?.close().catch(() => {});
      await tel.shutdown();
    },
  };
}
