/**
 * Throughput of the tensor data plane vs plain loopback TCP, in one run on one machine:
 *   node --import tsx transport/nats/tensors.bench.ts [sizesMB=16,256] [chunksKiB=128,256,512,1024]
 * NATS_MAX_PAYLOAD=<bytes> starts the server with a larger max_payload (chunks above 1 MiB).
 * Prints put, get and round-trip (size / (put + get)) MB/s for: the object store (per chunk size,
 * native and JS SHA-256), core NATS chunked publish (own framing, no persistence), and TCP.
 */
import { createHash } from "node:crypto";
import { createConnection, createServer, type Socket } from "node:net";
import { setSha256Backend } from "@nats-io/obj";
import { tensor } from "../../core/tensor.ts";
import { startNatsServer } from "../../test/support/nats-server.ts";
import { connectNats } from "./connect.ts";
import { NatsTensorStore } from "./tensors.ts";

const MB = 1e6;
const sizes = (process.argv[2] ?? "16,256").split(",").map((s) => Number(s) * 1024 * 1024);
const chunks = (process.argv[3] ?? "128,256,512,1024").split(",").map((s) => Number(s) * 1024);
const rate = (bytes: number, ms: number) => (bytes / MB / (ms / 1000)).toFixed(0);

interface Row {
  what: string;
  size: number;
  putMs: number;
  getMs: number;
}
const rows: Row[] = [];
function report(r: Row) {
  rows.push(r);
  console.log(
    `${r.what.padEnd(34)} ${(r.size / 1024 / 1024).toFixed(0).padStart(4)} MiB  put ${rate(r.size, r.putMs).padStart(5)} MB/s  get ${rate(r.size, r.getMs).padStart(5)} MB/s  round trip ${rate(r.size, r.putMs + r.getMs).padStart(5)} MB/s`,
  );
}

/** TCP: client sends N bytes to a server that keeps them, then the server sends them back. */
async function tcp(size: number): Promise<Row> {
  let stored: Buffer[] = [];
  let storedBytes = 0;
  let onStored: (() => void) | null = null;
  const server = createServer((s: Socket) => {
    s.on("data", (d: Buffer) => {
      if (d.length === 1 && storedBytes === size) {
        // "get" request: send everything back
        for (const b of stored) s.write(b);
        return;
      }
      stored.push(d);
      storedBytes += d.length;
      if (storedBytes === size) {
        s.write(Buffer.from([1])); // ack
        onStored?.();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  const sock = createConnection({ host: "127.0.0.1", port });
  await new Promise<void>((r) => sock.once("connect", r));
  const data = Buffer.from(tensor([size / 4]).data.buffer);
  const t0 = performance.now();
  const acked = new Promise<void>((r) => sock.once("data", () => r()));
  for (let at = 0; at < size; at += 1 << 20) sock.write(data.subarray(at, Math.min(size, at + (1 << 20))));
  await acked;
  const t1 = performance.now();
  let got = 0;
  const out = Buffer.allocUnsafe(size);
  await new Promise<void>((resolve) => {
    sock.on("data", (d: Buffer) => {
      d.copy(out, got);
      got += d.length;
      if (got === size) resolve();
    });
    sock.write(Buffer.from([0]));
  });
  const t2 = performance.now();
  sock.destroy();
  server.close();
  stored = [];
  onStored = null;
  return { what: "tcp loopback", size, putMs: t1 - t0, getMs: t2 - t1 };
}

/** Core NATS: 1 MiB chunks published to a subscriber (another connection), then back again. */
async function coreNats(url: string, size: number, chunk: number): Promise<Row> {
  const a = await connectNats(url, { name: "bench-a" });
  const b = await connectNats(url, { name: "bench-b" });
  const data = new Uint8Array(tensor([size / 4]).data.buffer);
  const recv = (nc: typeof a.nc, subject: string) => {
    const parts: Uint8Array[] = [];
    let got = 0;
    const sub = nc.subscribe(subject);
    const done = (async () => {
      for await (const m of sub) {
        parts.push(m.data);
        got += m.data.length;
        if (got >= size) break;
      }
      return parts;
    })();
    return done;
  };
  const send = async (nc: typeof a.nc, subject: string, bufs: Iterable<Uint8Array>) => {
    let i = 0;
    for (const p of bufs) {
      nc.publish(subject, p);
      if (++i % 16 === 0) await nc.flush();
    }
    await nc.flush();
  };
  const chunksOf = function* () {
    for (let at = 0; at < size; at += chunk) yield data.subarray(at, Math.min(size, at + chunk));
  };
  const atB = recv(b.nc, "bench.put");
  await b.nc.flush();
  const t0 = performance.now();
  await send(a.nc, "bench.put", chunksOf());
  const parts = await atB;
  const t1 = performance.now();
  const atA = recv(a.nc, "bench.get");
  await a.nc.flush();
  const t1b = performance.now();
  await send(b.nc, "bench.get", parts);
  await atA;
  const t2 = performance.now();
  await a.close();
  await b.close();
  return { what: `core nats publish ${chunk / 1024} KiB`, size, putMs: t1 - t0, getMs: t2 - t1b };
}

async function objectStore(url: string, size: number, chunk: number, sha: "native" | "js"): Promise<Row> {
  setSha256Backend(sha);
  const c = await connectNats(url, { name: "bench-obj", jsTimeout: 60_000 });
  const store = await NatsTensorStore.open(c.objm, { bucket: `bench-${chunk}-${sha}`, chunkBytes: chunk });
  const t = tensor([size / 4]);
  for (let i = 0; i < t.data.length; i += 4096) t.data[i] = i;
  const t0 = performance.now();
  const ref = await store.put("job/x/0", t);
  const t1 = performance.now();
  const back = await store.get(ref);
  const t2 = performance.now();
  if (back.data.length !== t.data.length) throw new Error("size mismatch");
  await store.delete("job/x/0");
  await c.jsm.streams.delete(`OBJ_bench-${chunk}-${sha}`);
  await c.close();
  setSha256Backend("native");
  return { what: `object store ${chunk / 1024} KiB sha=${sha}`, size, putMs: t1 - t0, getMs: t2 - t1 };
}

async function main() {
  const maxPayload = process.env.NATS_MAX_PAYLOAD ? Number(process.env.NATS_MAX_PAYLOAD) : undefined;
  const srv = await startNatsServer({ jetstream: true, ...(maxPayload ? { maxPayload } : {}) });
  try {
    for (const size of sizes) {
      const buf = Buffer.alloc(size);
      const h0 = performance.now();
      createHash("sha256").update(buf).digest();
      console.log(`native sha256 of ${size / 1024 / 1024} MiB: ${rate(size, performance.now() - h0)} MB/s`);
      const base = await tcp(size);
      report(base);
      report(await coreNats(srv.url, size, 1024 * 1024));
      for (const chunk of chunks) report(await objectStore(srv.url, size, chunk, "native"));
      if (size <= 64 * 1024 * 1024) report(await objectStore(srv.url, size, 1024 * 1024, "js"));
      const baseRt = base.putMs + base.getMs;
      for (const r of rows.filter((x) => x.size === size && x !== base)) {
        console.log(`  ratio vs tcp round trip: ${r.what}: ${(baseRt / (r.putMs + r.getMs)).toFixed(2)}`);
      }
    }
  } finally {
    await srv.stop();
  }
}

await main();
