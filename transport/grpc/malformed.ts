/**
 * Why a request's bytes are not a valid protobuf message, as an INVALID_ARGUMENT LavieError that
 * names the broken field when it can: fromBinary only says "premature EOF" or "The encoded data was
 * not valid for encoding utf-8", so the bytes are walked again along the message descriptor and
 * the first field that is truncated or holds invalid UTF-8 is named with its wire path
 * ("job.prompt", "inputs[2].tiles[0].object").
 *
 *   try { msg = fromBinary(desc, buf) } catch (err) { throw malformedMessage(desc, buf, err) }
 */
import { type DescField, type DescMessage, ScalarType } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { invalidArgument, type LavieError } from "../../core/errors.ts";

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Nesting depth walked (the generated messages nest a few levels; deeper is not worth naming). */
const MAX_DEPTH = 32;

interface Problem {
  readonly field: string;
  readonly message: string;
}

function isString(f: DescField): boolean {
  return (
    (f.fieldKind === "scalar" && f.scalar === ScalarType.STRING) ||
    (f.fieldKind === "list" && f.listKind === "scalar" && f.scalar === ScalarType.STRING)
  );
}

function messageOf(f: DescField): DescMessage | undefined {
  if (f.fieldKind === "message") return f.message;
  if (f.fieldKind === "list" && f.listKind === "message") return f.message;
  return undefined;
}

function walk(desc: DescMessage, bytes: Uint8Array, path: string, depth: number): Problem | null {
  const r = new BinaryReader(bytes);
  const seen = new Map<number, number>();
  const here = path || "request";
  while (r.pos < r.len) {
    let no: number;
    let wt: WireType;
    try {
      [no, wt] = r.tag();
    } catch (err) {
      return { field: here, message: `bad field tag (${(err as Error).message})` };
    }
    const f = desc.fields.find((x) => x.number === no);
    if (!f) {
      try {
        r.skip(wt, no);
      } catch (err) {
        return { field: here, message: `unknown field ${no} is cut short (${(err as Error).message})` };
      }
      continue;
    }
    const i = seen.get(no) ?? 0;
    seen.set(no, i + 1);
    const name = `${path ? `${path}.` : ""}${f.name}${f.fieldKind === "list" && wt === WireType.LengthDelimited && messageOf(f) ? `[${i}]` : ""}`;
    if (wt !== WireType.LengthDelimited) {
      try {
        r.skip(wt, no);
      } catch (err) {
        return { field: name, message: `is cut short (${(err as Error).message})` };
      }
      continue;
    }
    let b: Uint8Array;
    try {
      b = r.bytes();
    } catch (err) {
      return { field: name, message: `is cut short (${(err as Error).message})` };
    }
    if (isString(f)) {
      try {
        utf8.decode(b);
      } catch {
        return { field: name, message: "must be valid UTF-8" };
      }
    }
    const sub = messageOf(f);
    if (sub && depth < MAX_DEPTH) {
      const p = walk(sub, b, name, depth + 1);
      if (p) return p;
    }
  }
  return null;
}

/** The INVALID_ARGUMENT answer for bytes that fromBinary(desc) refused with `err`. */
export function malformedMessage(desc: DescMessage, bytes: Uint8Array, err: unknown): LavieError {
  const reason = err instanceof Error ? err.message : String(err);
  const p = walk(desc, bytes, "", 0);
  if (p) return invalidArgument(p.field, `${p.message} (malformed ${desc.typeName} message)`);
  return invalidArgument("request", `malformed ${desc.typeName} message: ${reason}`);
}
