import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { JobRequestSchema } from "../../gen/lavie/v1/jobs_pb.ts";
import { jobRequestFromMsg, jobRequestToMsg } from "./convert.ts";

test("the API's uint64 seed has the job seed's one range and message (core/seed.ts)", () => {
  const msg = (seed: bigint) => create(JobRequestSchema, { prompt: "a panda", seed });
  assert.equal(jobRequestFromMsg(msg(2n ** 53n - 1n)).seed, 2 ** 53 - 1);
  assert.equal(jobRequestFromMsg(create(JobRequestSchema, { prompt: "a panda" })).seed, undefined);
  for (const [seed, shown] of [
    [2n ** 53n, "9007199254740992"],
    [2n ** 64n - 1n, "18446744073709551615"],
  ] as const) {
    assert.throws(() => jobRequestFromMsg(msg(seed)), {
      code: "invalid_argument",
      field: "seed",
      message: `seed: must be an integer in 0..9007199254740991, got ${shown}`,
    });
  }
  assert.equal(jobRequestToMsg({ prompt: "x", seed: 2 ** 53 - 1 }).seed, 2n ** 53n - 1n);
});
