/**
 * The /metrics HTTP endpoint (Prometheus text format) of a process: GET /metrics; GET /healthz
 * answers "ok". Started by main.ts when its LAVIE_METRICS_PORT is not 0.
 */
import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";

export interface MetricsServer {
  /** host:port it listens on. */
  readonly address: string;
  close(): Promise<void>;
}

export function startMetricsServer(registry: Registry, host: string, port: number): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" && path === "/metrics") {
      registry.metrics().then(
        (text) => {
          res.writeHead(200, { "content-type": registry.contentType });
          res.end(text);
        },
        (err: unknown) => {
          res.writeHead(500, { "content-type": "text/plain" });
          res.end(`metrics: ${err instanceof Error ? err.message : String(err)}\n`);
        },
      );
      return;
    }
    if (req.method === "GET" && path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("ok\n");
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found: try /metrics\n");
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      const a = server.address();
      const bound = typeof a === "object" && a ? a.port : port;
      const h = host.includes(":") ? `[${host}]` : host;
      resolve({
        address: `${h}:${bound}`,
        close: () => new Promise<void>((r) => server.close(() => r())),
      });
    });
  });
}
