/**
 * Starts the OpenTelemetry SDK for a process (called once by each main.ts; libraries use only
 * @opentelemetry/api). Configured by the standard variables:
 *
 *   OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT  OTLP/HTTP (JSON) receiver;
 *                                                 tracing is off when neither is set
 *   OTEL_SERVICE_NAME                             service.name (default: the name given here)
 *   OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG sampler (default parentbased_always_on)
 *   OTEL_RESOURCE_ATTRIBUTES, OTEL_BSP_*          as the SDK documents them
 *
 * Spans go through a BatchSpanProcessor. Export failures are logged by the SDK's diag logger
 * (silent by default) and never reach the application.
 */
import { DiagLogLevel, diag } from "@opentelemetry/api";

/** semantic-conventions ATTR_SERVICE_NAME (its index costs ~50 ms to load). */
const ATTR_SERVICE_NAME = "service.name";

export interface Telemetry {
  /** Tracing is exporting spans (an OTLP endpoint is configured). */
  readonly tracing: boolean;
  /** Exports what is buffered (never throws). */
  flush(): Promise<void>;
  /** Flushes and stops the SDK (never throws). */
  shutdown(): Promise<void>;
}

const OFF: Telemetry = { tracing: false, flush: async () => {}, shutdown: async () => {} };

let started: Telemetry | undefined;

function set(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const v = env[name]?.trim();
  return v ? v : undefined;
}

/** Starts (once per process) and returns the process's telemetry; the SDK loads only when tracing is on. */
export async function startTelemetry(
  serviceName: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Telemetry> {
  if (started) return started;
  // With tracing off no propagator is registered: transport/telemetry/propagation.ts still passes a
  // client's traceparent through (its own W3C fallback).
  const endpoint = set(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") ?? set(env, "OTEL_EXPORTER_OTLP_ENDPOINT");
  if (!endpoint || set(env, "OTEL_SDK_DISABLED") === "true") {
    started = OFF;
    return started;
  }
  try {
    if (set(env, "OTEL_LOG_LEVEL") === "debug") {
      diag.setLogger(
        {
          error: console.error,
          warn: console.warn,
          info: console.info,
          debug: console.debug,
          verbose: console.debug,
        },
        DiagLogLevel.DEBUG,
      );
    }
    // Loaded only when tracing is on (they cost ~0.2 s of start-up).
    const [
      { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator },
      { OTLPTraceExporter },
      { resourceFromAttributes },
      { BatchSpanProcessor },
      { NodeTracerProvider },
    ] = await Promise.all([
      import("@opentelemetry/core"),
      import("@opentelemetry/exporter-trace-otlp-http"),
      import("@opentelemetry/resources"),
      import("@opentelemetry/sdk-trace-base"),
      import("@opentelemetry/sdk-trace-node"),
    ]);
    const provider = new NodeTracerProvider({
      resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: set(env, "OTEL_SERVICE_NAME") ?? serviceName }),
      spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())],
    });
    provider.register({
      propagator: new CompositePropagator({
        propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()],
      }),
    });
    const quiet = async (p: () => Promise<void>) => {
      try {
        await p();
      } catch {
        // telemetry never throws into the application
      }
    };
    started = {
      tracing: true,
      flush: () => quiet(() => provider.forceFlush()),
      shutdown: () => quiet(() => provider.shutdown()),
    };
  } catch {
    started = OFF;
  }
  return started;
}
