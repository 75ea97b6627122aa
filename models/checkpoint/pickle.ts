/**
 * A data-only unpickler for what torch.save writes (pickle protocols 2 to 5). Nothing from the file
 * is ever executed: GLOBAL resolves only an allow-list of container and tensor-rebuilding names,
 * each emulated in pickle_globals.ts; anything else is refused with the name it asked for.
 *
 * Python values become: None -> null, bool -> boolean, int -> number (bigint beyond 2^53), float ->
 * number, str -> string, bytes -> Uint8Array, list -> array, tuple -> frozen array, dict and
 * OrderedDict -> Map, set -> Set, argparse.Namespace -> Namespace; tensors are whatever
 * hooks.rebuildTensor returns. Every opcode pushes at most one value per byte read, so the stack and
 * memo can never outgrow the pickle itself, and every length is checked against the bytes left.
 */
import { LavieError } from "../../core/errors.ts";
import { describe } from "./dtypes.ts";
import { AllowedGlobal, Namespace, resolveGlobal, type UnpickleHooks } from "./pickle_globals.ts";

export { Namespace, StorageType, TorchDtype, type UnpickleHooks } from "./pickle_globals.ts";

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Runs the pickle in `data` (named `source` in errors) and returns the object it builds. */
export function unpickle(data: Uint8Array, source: string, hooks: UnpickleHooks): unknown {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  let pos = 0;
  let op = 0;

  const fail = (message: string) =>
    new LavieError("data_loss", `${source}: pickle opcode 0x${op.toString(16)} at byte ${pos}: ${message}`, {
      field: source,
      retryable: false,
    });
  const take = (n: number | bigint): Uint8Array => {
    if (BigInt(n) > BigInt(data.length - pos)) throw fail(`needs ${n} bytes, only ${data.length - pos} left`);
    const out = data.subarray(pos, pos + Number(n));
    pos += Number(n);
    return out;
  };
  /** Consumes n bytes and returns where they start. */
  const at = (n: number): number => {
    take(n);
    return pos - n;
  };
  const u8 = () => take(1)[0]!;
  const u16 = () => view.getUint16(at(2), true);
  const u32 = () => view.getUint32(at(4), true);
  const u64 = () => view.getBigUint64(at(8), true);
  const text = (n: number | bigint) => {
    try {
      return utf8.decode(take(n));
    } catch (err) {
      if (err instanceof LavieError) throw err;
      throw fail("string is not valid UTF-8");
    }
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0 || end - pos > 1024) throw fail("GLOBAL name is not a short newline-terminated line");
    return text(end - pos + 1).slice(0, -1);
  };
  /** The stack above the innermost MARK must not be empty (as in CPython, where MARK starts a new stack). */
  const checkDepth = () => {
    if (stack.length === 0 || (marks.length > 0 && stack.length <= marks[marks.length - 1]!)) {
      throw fail("stack underflow");
    }
  };
  const pop = (): unknown => {
    checkDepth();
    return stack.pop();
  };
  const top = (): unknown => {
    checkDepth();
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const m = marks.pop();
    if (m === undefined) throw fail("no MARK to pop to");
    return stack.splice(m);
  };
  const int = (b: bigint) => (b >= -MAX_SAFE && b <= MAX_SAFE ? Number(b) : b);
  const long = (bytes: Uint8Array): number | bigint => {
    let v = 0n;
    for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]!);
    if (bytes.length > 0 && bytes[bytes.length - 1]! & 0x80) v -= 1n << BigInt(bytes.length * 8);
    return int(v);
  };
  const tuple = (items: unknown[]) => Object.freeze(items);
  const list = (v: unknown): unknown[] => {
    if (!Array.isArray(v) || Object.isFrozen(v)) throw fail(`APPEND needs a list, got ${describe(v)}`);
    return v;
  };
  const dict = (v: unknown): Map<unknown, unknown> => {
    if (!(v instanceof Map)) throw fail(`SETITEM needs a dict, got ${describe(v)}`);
    return v;
  };
  const setItems = (d: Map<unknown, unknown>, items: unknown[]) => {
    if (items.length % 2) throw fail("SETITEMS needs key/value pairs");
    for (let i = 0; i < items.length; i += 2) d.set(items[i], items[i + 1]);
  };
  const apply = (fn: unknown, args: unknown, kind: "call" | "newobj"): unknown => {
    const run = fn instanceof AllowedGlobal ? fn.behaviour[kind] : undefined;
    if (!run) throw fail(`cannot ${kind === "call" ? "call" : "instantiate"} ${describe(fn)}`);
    if (!Array.isArray(args) || !Object.isFrozen(args)) {
      throw fail(`arguments must be a tuple, got ${describe(args)}`);
    }
    try {
      return run(args, hooks);
    } catch (err) {
      if (err instanceof LavieError) throw err;
      throw fail(`${(fn as AllowedGlobal).qualname}: ${(err as Error).message}`);
    }
  };
  const build = (obj: unknown, state: unknown): void => {
    if (obj instanceof Namespace && state instanceof Map) {
      for (const [k, v] of state) obj.attrs.set(String(k), v);
    } else if (!(obj instanceof Map && (state === null || state instanceof Map))) {
      // OrderedDict state (e.g. a state dict's _metadata) carries nothing we need.
      throw fail(`BUILD (setting state) is not allowed on ${describe(obj)}`);
    }
  };

  for (;;) {
    if (pos >= data.length) throw fail("pickle ends without STOP (truncated?)");
    op = data[pos++]!;
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) throw fail("pickle protocol above 5");
        break;
      case 0x95: // FRAME: framing only, its contents follow as ordinary opcodes
        if (u64() > BigInt(data.length - pos)) throw fail("frame runs past the end of the pickle");
        break;
      case 0x2e: // STOP
        return pop();
      case 0x28: // MARK
        marks.push(stack.length);
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
      case 0x89: // NEWFALSE
        stack.push(op === 0x88);
        break;
      case 0x4a: // BININT
        stack.push(view.getInt32(at(4), true));
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
        stack.push(long(take(u8())));
        break;
      case 0x8b: // LONG4
        stack.push(long(take(u32())));
        break;
      case 0x47: // BINFLOAT (big-endian)
        stack.push(view.getFloat64(at(8), false));
        break;
      case 0x58: // BINUNICODE
        stack.push(text(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(text(u8()));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(text(u64()));
        break;
      case 0x54: // BINSTRING (Python 2 str, read as latin-1)
      case 0x55: // SHORT_BINSTRING
        stack.push(Buffer.from(take(op === 0x54 ? u32() : u8())).toString("latin1"));
        break;
      case 0x42: // BINBYTES
        stack.push(new Uint8Array(take(u32())));
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(new Uint8Array(take(u8())));
        break;
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        stack.push(new Uint8Array(take(u64())));
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(tuple([]));
        break;
      case 0x8f: // EMPTY_SET
        stack.push(new Set());
        break;
      case 0x85: // TUPLE1
      case 0x86: // TUPLE2
      case 0x87: {
        // TUPLE3
        const items: unknown[] = [];
        for (let i = op - 0x84; i > 0; i--) items.unshift(pop());
        stack.push(tuple(items));
        break;
      }
      case 0x74: // TUPLE
        stack.push(tuple(popMark()));
        break;
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x64: {
        // DICT
        const d = new Map();
        setItems(d, popMark());
        stack.push(d);
        break;
      }
      case 0x91: // FROZENSET
        stack.push(new Set(popMark()));
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        list(top()).push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        list(top()).push(...items);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        dict(top()).set(k, v);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(dict(top()), items);
        break;
      }
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const s = top();
        if (!(s instanceof Set)) throw fail(`ADDITEMS needs a set, got ${describe(s)}`);
        for (const v of items) s.add(v);
        break;
      }
      case 0x71: // BINPUT
      case 0x72: // LONG_BINPUT
        memo.set(op === 0x71 ? u8() : u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
      case 0x6a: {
        // LONG_BINGET
        const i = op === 0x68 ? u8() : u32();
        if (!memo.has(i)) throw fail(`memo has no entry ${i}`);
        stack.push(memo.get(i));
        break;
      }
      case 0x63: {
        // GLOBAL
        const module = line();
        stack.push(resolveGlobal(module, line(), source));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== "string" || typeof name !== "string") {
          throw fail("STACK_GLOBAL needs two strings");
        }
        stack.push(resolveGlobal(module, name, source));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        stack.push(apply(pop(), args, "call"));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = pop();
        stack.push(apply(pop(), args, "newobj"));
        break;
      }
      case 0x92: {
        // NEWOBJ_EX
        const kwargs = pop();
        const args = pop();
        if (!(kwargs instanceof Map) || kwargs.size > 0) {
          throw fail("NEWOBJ_EX with keyword arguments is not supported");
        }
        stack.push(apply(pop(), args, "newobj"));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        build(top(), state);
        break;
      }
      case 0x51: // BINPERSID
        stack.push(hooks.persistentLoad(pop()));
        break;
      default:
        throw fail("unsupported opcode (only the binary opcodes torch.save writes are read)");
    }
  }
}
