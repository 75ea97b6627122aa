import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import * as grpc from "@grpc/grpc-js";
import { LavieError } from "../../core/errors.ts";
import {
  GetJobResponseSchema,
  JobService,
  SubmitJobRequestSchema,
  SubmitJobResponseSchema,
} from "../../gen/lavie/v1/jobs_pb.ts";
import { ExecuteTaskRequestSchema } from "../../gen/lavie/v1/runner_pb.ts";
import { addService, malformedRequest } from "./adapter.ts";
import { malformedMessage } from "./malformed.ts";

const ld = (field: number, bytes: Uint8Array) =>
  new BinaryWriter().tag(field, WireType.LengthDelimited).bytes(bytes).finish();
const concat = (...parts: Uint8Array[]) => Uint8Array.from(parts.flatMap((p) => [...p]));
const text = (s: string) => new TextEncoder().encode(s);
const BAD = new Uint8Array([0x61, 0xc3, 0x28, 0x62]); // "a", a cut 2-byte sequence, "b"

function explain(desc: Parameters<typeof malformedMessage>[0], bytes: Uint8Array): LavieError {
  const e = malformedMessage(desc, bytes, new Error("premature EOF"));
  assert.ok(e instanceof LavieError);
  assert.equal(e.code, "invalid_argument");
  return e;
}

test("invalid UTF-8 is named by the field's wire path", () => {
  const prompt = explain(SubmitJobRequestSchema, ld(1, concat(ld(1, BAD), ld(3, text("base")))));
  assert.equal(prompt.field, "job.prompt");
  assert.match(
    prompt.message,
    /^job\.prompt: must be valid UTF-8 \(malformed lavie\.v1\.SubmitJobRequest message\)$/,
  );
  const negative = explain(SubmitJobRequestSchema, ld(1, concat(ld(1, text("p")), ld(7, ld(4, BAD)))));
  assert.equal(negative.field, "job.base.negative_prompt");
  const valid = toBinary(
    ExecuteTaskRequestSchema,
    create(ExecuteTaskRequestSchema, { inputs: [{ tensor: "a" }] }),
  );
  const tile = explain(
    ExecuteTaskRequestSchema,
    concat(valid, ld(5, concat(ld(1, text("b")), ld(4, ld(1, BAD))))),
  );
  assert.equal(tile.field, "inputs[1].tiles[0].object");
});

test("truncated fields and bad tags are named; otherwise the decoder's reason is kept", () => {
  const full = toBinary(
    SubmitJobRequestSchema,
    create(SubmitJobRequestSchema, { job: { prompt: "a panda" } }),
  );
  const cut = explain(SubmitJobRequestSchema, full.slice(0, full.length - 2));
  assert.equal(cut.field, "job");
  assert.match(cut.message, /^job: is cut short/);
  const tag = explain(SubmitJobRequestSchema, new Uint8Array([0x0e]));
  assert.equal(tag.field, "request");
  assert.match(tag.message, /bad field tag/);
  const other = malformedMessage(SubmitJobRequestSchema, full, new Error("something else"));
  assert.equal(other.message, "request: malformed lavie.v1.SubmitJobRequest message: something else");
});

// A real grpc-js server: malformed requests get INVALID_ARGUMENT (unary and server streaming) and
// never reach the handler; valid ones do.
let server: grpc.Server;
let client: grpc.Client;
const reached: string[] = [];

before(async () => {
  server = new grpc.Server();
  addService(server, JobService, {
    submitJob: (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      reached.push("submitJob");
      assert.equal(malformedRequest(call.request), undefined);
      cb(null, create(SubmitJobResponseSchema, { created: true }));
    },
    getJob: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, create(GetJobResponseSchema)),
    watchJob: (call: grpc.ServerWritableStream<unknown, unknown>) => {
      reached.push("watchJob");
      call.end();
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
});

after(() => {
  client?.close();
  server?.forceShutdown();
});

const id = (b: Buffer) => b;
function call(path: string, stream: boolean, bytes: Uint8Array): Promise<{ code: number; details: string }> {
  const buf = Buffer.from(bytes);
  return new Promise((resolve) => {
    if (!stream) {
      client.makeUnaryRequest(path, id, id, buf, (err) =>
        resolve({ code: err?.code ?? grpc.status.OK, details: err?.details ?? "" }),
      );
      return;
    }
    const c = client.makeServerStreamRequest(path, id, id, buf);
    c.on("data", () => {});
    c.on("error", () => {});
    c.on("status", (s) => resolve({ code: s.code, details: s.details }));
  });
}

test("addService answers malformed requests with INVALID_ARGUMENT before the handler runs", async () => {
  const bad = ld(1, ld(1, BAD));
  const unary = await call("/lavie.v1.JobService/SubmitJob", false, bad);
  assert.equal(unary.code, grpc.status.INVALID_ARGUMENT);
  assert.match(unary.details, /^job\.prompt: must be valid UTF-8/);
  const stream = await call("/lavie.v1.JobService/WatchJob", true, new Uint8Array([0x0a, 0x05, 0x61]));
  assert.equal(stream.code, grpc.status.INVALID_ARGUMENT);
  assert.match(stream.details, /^job_id: is cut short/);
  assert.deepEqual(reached, []);
  const ok = toBinary(SubmitJobRequestSchema, create(SubmitJobRequestSchema, { job: { prompt: "p" } }));
  assert.equal((await call("/lavie.v1.JobService/SubmitJob", false, ok)).code, grpc.status.OK);
  assert.equal((await call("/lavie.v1.JobService/WatchJob", true, new Uint8Array())).code, grpc.status.OK);
  assert.deepEqual(reached, ["submitJob", "watchJob"]);
});
