import assert from "node:assert/strict";
import { test } from "node:test";
import type { LavieError } from "../../core/errors.ts";
import { connectionOf } from "./credentials.ts";

const errorOf = (fn: () => unknown): LavieError => {
  try {
    fn();
  } catch (e) {
    return e as LavieError;
  }
  return assert.fail("expected an error");
};

test("a bearer credential adds an interceptor; TLS options build secure credentials", () => {
  const plain = connectionOf({});
  assert.equal(plain.credentials._isSecure(), false);
  assert.equal(plain.options.interceptors, undefined);
  const c = connectionOf({ apiKey: "lk-0123456789", tls: { serverName: "lavie.svc" } });
  assert.equal(c.credentials._isSecure(), true);
  assert.equal(c.options.interceptors?.length, 1);
  assert.equal(c.options["grpc.ssl_target_name_override"], "lavie.svc");
});

test("bad credentials are invalid_argument errors that never contain the value", () => {
  const e = errorOf(() => connectionOf({ apiKey: "secret with spaces" }));
  assert.equal(e.code, "invalid_argument");
  assert.equal(e.field, "apiKey");
  assert.ok(!e.message.includes("secret"));
  assert.equal(errorOf(() => connectionOf({ apiKey: "a", token: "b" })).code, "invalid_argument");
  assert.equal(errorOf(() => connectionOf({ tls: { cert: "x" } })).field, "tls.key");
});
