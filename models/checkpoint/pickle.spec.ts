import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { LavieError } from "../../core/errors.ts";
import { Namespace, StorageType, TorchDtype, type UnpickleHooks, unpickle } from "./pickle.ts";
import { PickleWriter } from "./testing.ts";

const dir = mkdtempSync(join(tmpdir(), "lavie-pickle-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const hooks: UnpickleHooks = {
  persistentLoad: (pid) => ({ pid }),
  rebuildTensor: (storage, offset, size, stride) => ({ storage, offset, size, stride }),
};

/**
 * pickle.dumps(obj, protocol=p) by CPython 3 for
 *   L = [7, "x"]
 *   obj = {"ints": [0, 1, -2, 255, 300, 70000, -70000, 2**40, -2**70, 2**53], "floats": [1.5, -0.0, 1e300],
 *          "consts": [None, True, False], "t": (1,), "t2": (1, 2), "t3": (1, 2, 3), "t4": (1, 2, 3, 4),
 *          "empty": (), "s": "héllo ✓", "b": b"\x00\x01\xff", "od": OrderedDict([("x", 1), ("y", [])]),
 *          "set": {1, 2}, "fs": frozenset([3]), "shared": L, "shared2": L, 5: "int key"}
 */
const PY_PICKLES: Record<number, string> = {
  2: "gAJ9cQAoWAQAAABpbnRzcQFdcQIoSwBLAUr+////S/9NLAFKcBEBAEqQ7v7/igYAAAAAAAGKCQAAAAAAAAAAwIoHAAAAAAAAIGVYBgAAAGZsb2F0c3EDXXEEKEc/+AAAAAAAAEeAAAAAAAAAAEd+N+Q8iAB1nGVYBgAAAGNvbnN0c3EFXXEGKE6IiWVYAQAAAHRxB0sBhXEIWAIAAAB0MnEJSwFLAoZxClgCAAAAdDNxC0sBSwJLA4dxDFgCAAAAdDRxDShLAUsCSwNLBHRxDlgFAAAAZW1wdHlxDylYAQAAAHNxEFgKAAAAaMOpbGxvIOKck3ERWAEAAABicRJjX2NvZGVjcwplbmNvZGUKcRNYBAAAAAABw79xFFgGAAAAbGF0aW4xcRWGcRZScRdYAgAAAG9kcRhjY29sbGVjdGlvbnMKT3JkZXJlZERpY3QKcRkpUnEaKFgBAAAAeHEbSwFYAQAAAHlxHF1xHXVYAwAAAHNldHEeY19fYnVpbHRpbl9fCnNldApxH11xIChLAUsCZYVxIVJxIlgCAAAAZnNxI2NfX2J1aWx0aW5fXwpmcm96ZW5zZXQKcSRdcSVLA2GFcSZScSdYBgAAAHNoYXJlZHEoXXEpKEsHaBtlWAcAAABzaGFyZWQycSpoKUsFWAcAAABpbnQga2V5cSt1Lg==",
  4: "gASVRQEAAAAAAAB9lCiMBGludHOUXZQoSwBLAUr+////S/9NLAFKcBEBAEqQ7v7/igYAAAAAAAGKCQAAAAAAAAAAwIoHAAAAAAAAIGWMBmZsb2F0c5RdlChHP/gAAAAAAABHgAAAAAAAAABHfjfkPIgAdZxljAZjb25zdHOUXZQoToiJZYwBdJRLAYWUjAJ0MpRLAUsChpSMAnQzlEsBSwJLA4eUjAJ0NJQoSwFLAksDSwR0lIwFZW1wdHmUKYwBc5SMCmjDqWxsbyDinJOUjAFilEMDAAH/lIwCb2SUjAtjb2xsZWN0aW9uc5SMC09yZGVyZWREaWN0lJOUKVKUKIwBeJRLAYwBeZRdlHWMA3NldJSPlChLAUsCkIwCZnOUKEsDkZSMBnNoYXJlZJRdlChLB2gZZYwHc2hhcmVkMpRoIUsFjAdpbnQga2V5lHUu",
};

for (const [protocol, b64] of Object.entries(PY_PICKLES)) {
  test(`containers and scalars from a CPython protocol-${protocol} pickle`, () => {
    const obj = unpickle(Buffer.from(b64, "base64"), "obj.pkl", hooks) as Map<unknown, unknown>;
    assert.ok(obj instanceof Map);
    assert.deepEqual(obj.get("ints"), [0, 1, -2, 255, 300, 70000, -70000, 2 ** 40, -(2n ** 70n), 2n ** 53n]);
    assert.deepEqual(obj.get("floats"), [1.5, -0, 1e300]);
    assert.ok(Object.is((obj.get("floats") as number[])[1], -0));
    assert.deepEqual(obj.get("consts"), [null, true, false]);
    for (const [k, v] of [
      ["t", [1]],
      ["t2", [1, 2]],
      ["t3", [1, 2, 3]],
      ["t4", [1, 2, 3, 4]],
      ["empty", []],
    ] as const) {
      assert.deepEqual(obj.get(k), v);
      assert.ok(Object.isFrozen(obj.get(k)), `${k} is a tuple`);
    }
    assert.ok(!Object.isFrozen(obj.get("ints")));
    assert.equal(obj.get("s"), "héllo ✓");
    assert.deepEqual(obj.get("b"), Uint8Array.from([0, 1, 255]));
    assert.deepEqual(
      obj.get("od"),
      new Map<string, unknown>([
        ["x", 1],
        ["y", []],
      ]),
    );
    assert.deepEqual(obj.get("set"), new Set([1, 2]));
    assert.deepEqual(obj.get("fs"), new Set([3]));
    assert.deepEqual(obj.get("shared"), [7, "x"]);
    assert.equal(obj.get("shared"), obj.get("shared2"), "memo keeps one shared list");
    assert.equal(obj.get(5), "int key");
  });
}

function refusedGlobal(bytes: Uint8Array, qualname: string): void {
  assert.throws(
    () => unpickle(bytes, "evil.pkl", hooks),
    (err: unknown) => {
      assert.ok(err instanceof LavieError);
      assert.equal(err.code, "failed_precondition");
      assert.ok(
        err.message.startsWith(
          `evil.pkl: refusing to load: the pickle references ${qualname}, which is not a tensor`,
        ),
        err.message,
      );
      return true;
    },
  );
}

test("code-executing globals are refused and nothing runs", () => {
  const marker = join(dir, "pwned");
  const command = `touch ${marker}`;
  const call = (w: PickleWriter) => w.str(command).op(0x85, 0x52).done(); // TUPLE1, REDUCE
  refusedGlobal(call(new PickleWriter().global("os", "system")), "os.system");
  refusedGlobal(call(new PickleWriter().global("posix", "system")), "posix.system");
  refusedGlobal(call(new PickleWriter().global("builtins", "eval")), "builtins.eval");
  refusedGlobal(call(new PickleWriter().global("__builtin__", "exec")), "builtins.exec");
  refusedGlobal(call(new PickleWriter().global("subprocess", "Popen")), "subprocess.Popen");
  refusedGlobal(
    call(new PickleWriter().global("torch.storage", "_load_from_bytes")),
    "torch.storage._load_from_bytes",
  );
  refusedGlobal(call(new PickleWriter().global("torch", "load")), "torch.load");
  // STACK_GLOBAL (protocol 4) with the names as strings, and a global hidden inside a container.
  refusedGlobal(call(new PickleWriter().str("os").str("system").op(0x93)), "os.system");
  refusedGlobal(
    new PickleWriter()
      .op(0x7d)
      .str("ok")
      .global("collections", "OrderedDict")
      .op(0x29, 0x52, 0x73)
      .str("x")
      .global("nt", "system")
      .op(0x73)
      .done(),
    "nt.system",
  );
  // Allowed names do not help: a storage class or dtype cannot be called, a tensor rebuild cannot be built on.
  assert.throws(
    () => unpickle(call(new PickleWriter().global("torch", "FloatStorage")), "evil.pkl", hooks),
    /cannot call StorageType/,
  );
  assert.throws(
    () => unpickle(new PickleWriter().op(0x5d).str("x").op(0x62).done(), "evil.pkl", hooks),
    /BUILD \(setting state\) is not allowed on a list/,
  );
  assert.equal(existsSync(marker), false);
});

test("torch names resolve to inert values; tensors and persistent ids go through the hooks", () => {
  const w = new PickleWriter()
    .global("torch._utils", "_rebuild_parameter")
    .tuple((p) =>
      p
        .global("torch._utils", "_rebuild_tensor_v2")
        .tuple((t) => {
          t.tuple((pid) => pid.str("storage").global("torch", "HalfStorage").str("0").str("cpu").int(6)).op(
            0x51,
          ); // BINPERSID
          t.int(1)
            .int(2)
            .op(0x85)
            .int(1)
            .op(0x85)
            .op(0x89)
            .global("collections", "OrderedDict")
            .op(0x29, 0x52);
        })
        .op(0x52)
        .op(0x88)
        .op(0x7d),
    )
    .op(0x52);
  const t = unpickle(w.done(), "t.pkl", hooks) as Record<string, unknown>;
  assert.deepEqual(t.offset, 1);
  assert.deepEqual(t.size, [2]);
  assert.deepEqual(t.stride, [1]);
  const pid = (t.storage as { pid: unknown[] }).pid;
  assert.equal(pid[0], "storage");
  assert.deepEqual(pid[1], new StorageType("HalfStorage", "F16"));
  assert.deepEqual(pid.slice(2), ["0", "cpu", 6]);
  assert.deepEqual(
    unpickle(new PickleWriter().global("torch", "bfloat16").done(), "d.pkl", hooks),
    new TorchDtype("bfloat16", "BF16"),
  );
  const ns = unpickle(
    new PickleWriter()
      .global("argparse", "Namespace")
      .op(0x29, 0x81)
      .op(0x7d)
      .str("lr")
      .int(3)
      .op(0x73, 0x62)
      .done(),
    "ns.pkl",
    hooks,
  );
  assert.ok(ns instanceof Namespace);
  assert.deepEqual(ns.attrs, new Map([["lr", 3]]));
});

test("malformed pickles are refused as data loss", () => {
  const bad = (bytes: Uint8Array, pattern: RegExp) =>
    assert.throws(
      () => unpickle(bytes, "bad.pkl", hooks),
      (err: unknown) => err instanceof LavieError && err.code === "data_loss" && pattern.test(err.message),
    );
  bad(Buffer.from([0x80, 2, 0x4e]), /ends without STOP/);
  bad(Buffer.from([0x80, 2, 0x2e]), /stack underflow/);
  bad(Buffer.from([0x80, 2, 0x68, 3, 0x2e]), /memo has no entry 3/);
  bad(Buffer.from([0x80, 2, 0x28, 0x30, 0x2e]), /stack underflow/); // POP below a MARK
  bad(Buffer.from([0x80, 2, 0x4a, 1, 2]), /needs 4 bytes, only 2 left/);
  bad(
    Buffer.from([0x80, 2, 0x58, 0xff, 0xff, 0xff, 0x7f, 0x61, 0x2e]),
    /needs 2147483647 bytes, only 2 left/,
  );
  const huge = Buffer.from([0x80, 4, 0x8d, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x2e]);
  bad(huge, /needs 1152921504606846976 bytes, only 1 left/);
  bad(Buffer.from([0x80, 2, 0x49, 0x31, 0x0a, 0x2e]), /opcode 0x49 at byte 3: unsupported opcode/); // protocol-0 INT
  bad(Buffer.from([0x80, 2, 0x69, 0x2e]), /unsupported opcode/); // INST
  bad(Buffer.from([0x80, 2, 0x8c, 2, 0xc3, 0x28, 0x2e]), /not valid UTF-8/);
  bad(new PickleWriter().op(0x4e, 0x4e, 0x61).done(), /APPEND needs a list, got None/);
  bad(new PickleWriter().op(0x5d, 0x4e, 0x4e, 0x73).done(), /SETITEM needs a dict, got a list/);
  bad(
    new PickleWriter().global("collections", "OrderedDict").op(0x5d, 0x52).done(),
    /arguments must be a tuple/,
  );
  bad(new PickleWriter().op(0x80, 9).done(), /protocol above 5/);
});
