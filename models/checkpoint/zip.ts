/**
 * A minimal ZIP reader for torch.save archives: end-of-central-directory (with the ZIP64 locator and
 * record torch writes for large files), central directory, local headers, stored and deflated
 * entries. Every size and offset is checked against the file before it is used; encrypted entries,
 * other compression methods, multi-disk archives and inconsistent headers are refused.
 */
import { crc32, inflateRawSync } from "node:zlib";
import { LavieError } from "../../core/errors.ts";
import { RangeFile } from "./file.ts";

export interface ZipEntry {
  readonly name: string;
  /** 0 = stored, 8 = deflate. */
  readonly method: 0 | 8;
  readonly compressedSize: number;
  readonly size: number;
  readonly crc32: number;
  readonly localHeaderOffset: number;
}

const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CENTRAL_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;
const EOCD_SIZE = 22;
const CENTRAL_SIZE = 46;
const LOCAL_SIZE = 30;
/** Deflate cannot expand by more than about 1032:1; a larger declared size is a lie. */
const MAX_DEFLATE_RATIO = 1100;

export class ZipArchive {
  private readonly dataOffsets = new Map<string, number>();

  private constructor(
    readonly file: RangeFile,
    readonly entries: ReadonlyMap<string, ZipEntry>,
    /** Where the central directory starts: all entry data must lie before it. */
    private readonly cdOffset: number,
  ) {}

  static async open(pathOrFile: string | RangeFile): Promise<ZipArchive> {
    const file = typeof pathOrFile === "string" ? await RangeFile.open(pathOrFile) : pathOrFile;
    const { count, cdOffset, cdSize } = await readEnd(file);
    const cd = await file.read(cdOffset, cdSize);
    const entries = parseCentralDirectory(file, cd, count, cdOffset);
    return new ZipArchive(file, entries, cdOffset);
  }

  entry(name: string): ZipEntry {
    const e = this.entries.get(name);
    if (!e) {
      throw new LavieError("data_loss", `${this.file.path}: archive has no entry "${name}"`, {
        field: this.file.path,
        retryable: false,
      });
    }
    return e;
  }

  /** The whole (decompressed) entry, its CRC-32 checked. */
  async read(name: string): Promise<Uint8Array> {
    const e = this.entry(name);
    const raw = await this.file.read(await this.dataOffset(e), e.compressedSize);
    const data = e.method === 0 ? raw : this.inflate(e, raw);
    if (crc32(data) >>> 0 !== e.crc32) throw this.file.corrupt(`entry "${name}" fails its CRC-32 check`);
    return data;
  }

  /** `length` bytes at `offset` of the decompressed entry (stored entries read just that range). */
  async readRange(name: string, offset: number, length: number): Promise<Uint8Array> {
    const e = this.entry(name);
    if (offset < 0 || length < 0 || offset + length > e.size) {
      throw this.file.corrupt(`range ${offset}+${length} lies outside entry "${name}" of ${e.size} bytes`);
    }
    if (offset === 0 && length === e.size) return this.read(name);
    if (e.method === 0) return this.file.read((await this.dataOffset(e)) + offset, length);
    return new Uint8Array((await this.read(name)).subarray(offset, offset + length));
  }

  private inflate(e: ZipEntry, raw: Uint8Array): Uint8Array {
    let out: Buffer;
    try {
      out = inflateRawSync(raw, { maxOutputLength: Math.max(1, e.size) });
    } catch (err) {
      throw this.file.corrupt(
        `entry "${e.name}" does not inflate to its declared ${e.size} bytes (${(err as Error).message})`,
      );
    }
    if (out.length !== e.size) {
      throw this.file.corrupt(
        `entry "${e.name}" inflates to ${out.length} bytes, not the declared ${e.size}`,
      );
    }
    return out;
  }

  private async dataOffset(e: ZipEntry): Promise<number> {
    const cached = this.dataOffsets.get(e.name);
    if (cached !== undefined) return cached;
    const bad = (m: string) => this.file.corrupt(`entry "${e.name}": ${m}`);
    if (e.localHeaderOffset + LOCAL_SIZE > this.cdOffset) {
      throw bad("local header lies outside the entry area");
    }
    const h = view(await this.file.read(e.localHeaderOffset, LOCAL_SIZE));
    if (h.getUint32(0, true) !== LOCAL_SIG) throw bad(`no local header at byte ${e.localHeaderOffset}`);
    if (h.getUint16(6, true) & 1) throw bad("entry is encrypted");
    if (h.getUint16(8, true) !== e.method) {
      throw bad("local and central headers disagree on the compression method");
    }
    const nameLen = h.getUint16(26, true);
    const start = e.localHeaderOffset + LOCAL_SIZE;
    const offset = start + nameLen + h.getUint16(28, true);
    if (offset + e.compressedSize > this.cdOffset) {
      throw bad(
        `data (${e.compressedSize} bytes at ${offset}) runs past the entry area (${this.cdOffset} bytes)`,
      );
    }
    const localName = await this.file.read(start, nameLen);
    if (Buffer.from(localName).toString("utf-8") !== e.name) {
      throw bad("local header names a different entry");
    }
    this.dataOffsets.set(e.name, offset);
    return offset;
  }
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** A 64-bit field that must not exceed `limit` (the file size unless stated). */
function u64(v: DataView, at: number, file: RangeFile, what: string, limit = file.size): number {
  const n = v.getBigUint64(at, true);
  if (n > BigInt(limit)) {
    throw file.corrupt(`${what} ${n} exceeds ${limit === file.size ? "the file size " : ""}${limit}`);
  }
  return Number(n);
}

/** Finds the end-of-central-directory record (and ZIP64 record if present). */
async function readEnd(file: RangeFile): Promise<{ count: number; cdOffset: number; cdSize: number }> {
  if (file.size < EOCD_SIZE) throw file.corrupt(`not a zip archive (${file.size} bytes)`);
  const tailLen = Math.min(file.size, EOCD_SIZE + 0xffff);
  const tailStart = file.size - tailLen;
  const tail = await file.read(tailStart, tailLen);
  const t = view(tail);
  let at = -1;
  for (let i = tailLen - EOCD_SIZE; i >= 0; i--) {
    if (t.getUint32(i, true) === EOCD_SIG && i + EOCD_SIZE + t.getUint16(i + 20, true) === tailLen) {
      at = i;
      break;
    }
  }
  if (at < 0) throw file.corrupt("not a zip archive or truncated: no end-of-central-directory record");
  const eocdPos = tailStart + at;
  const disk = t.getUint16(at + 4, true);
  const cdDisk = t.getUint16(at + 6, true);
  if ((disk !== 0 && disk !== 0xffff) || (cdDisk !== 0 && cdDisk !== 0xffff)) {
    throw file.corrupt("multi-disk archives are not supported");
  }
  let count = t.getUint16(at + 10, true);
  let cdSize = t.getUint32(at + 12, true);
  let cdOffset = t.getUint32(at + 16, true);
  let end = eocdPos;
  if (at >= 20 && t.getUint32(at - 20, true) === ZIP64_LOCATOR_SIG) {
    const recPos = u64(t, at - 20 + 8, file, "ZIP64 record offset");
    if (recPos + 56 > eocdPos - 20) {
      throw file.corrupt("ZIP64 end-of-central-directory record lies outside the file");
    }
    const r = view(await file.read(recPos, 56));
    if (r.getUint32(0, true) !== ZIP64_EOCD_SIG) {
      throw file.corrupt("ZIP64 locator points at no ZIP64 record");
    }
    if (r.getUint32(16, true) !== 0 || r.getUint32(20, true) !== 0) {
      throw file.corrupt("multi-disk archives are not supported");
    }
    count = u64(r, 32, file, "entry count");
    cdSize = u64(r, 40, file, "central directory size");
    cdOffset = u64(r, 48, file, "central directory offset");
    end = recPos;
  } else if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    throw file.corrupt("ZIP64 archive without its ZIP64 end-of-central-directory locator (truncated?)");
  }
  if (cdOffset + cdSize > end) {
    throw file.corrupt(
      `central directory (${cdSize} bytes at ${cdOffset}) runs past its end record at ${end} (truncated?)`,
    );
  }
  if (count * CENTRAL_SIZE > cdSize) {
    throw file.corrupt(`${count} entries cannot fit a ${cdSize}-byte central directory`);
  }
  return { count, cdOffset, cdSize };
}

function parseCentralDirectory(
  file: RangeFile,
  cd: Uint8Array,
  count: number,
  cdOffset: number,
): Map<string, ZipEntry> {
  const v = view(cd);
  const entries = new Map<string, ZipEntry>();
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + CENTRAL_SIZE > cd.length || v.getUint32(p, true) !== CENTRAL_SIG) {
      throw file.corrupt(`central directory entry ${i} is malformed`);
    }
    const flags = v.getUint16(p + 8, true);
    const method = v.getUint16(p + 10, true);
    const nameLen = v.getUint16(p + 28, true);
    const extraLen = v.getUint16(p + 30, true);
    const commentLen = v.getUint16(p + 32, true);
    const next = p + CENTRAL_SIZE + nameLen + extraLen + commentLen;
    if (next > cd.length) throw file.corrupt(`central directory entry ${i} runs past the directory`);
    let name: string;
    try {
      name = utf8.decode(cd.subarray(p + CENTRAL_SIZE, p + CENTRAL_SIZE + nameLen));
    } catch {
      throw file.corrupt(`central directory entry ${i} has a name that is not UTF-8`);
    }
    const bad = (m: string) => file.corrupt(`entry "${name}": ${m}`);
    if (flags & 0x41) throw bad("entry is encrypted; encrypted archives are not supported");
    if (method !== 0 && method !== 8) {
      throw bad(`compression method ${method} is not supported (only stored and deflate)`);
    }
    if (entries.has(name)) throw bad("entry appears twice in the central directory");
    const sizes = {
      size: v.getUint32(p + 24, true),
      compressedSize: v.getUint32(p + 20, true),
      localHeaderOffset: v.getUint32(p + 42, true),
    };
    readZip64Extra(
      file,
      cd.subarray(p + CENTRAL_SIZE + nameLen, p + CENTRAL_SIZE + nameLen + extraLen),
      sizes,
      name,
    );
    if (sizes.localHeaderOffset + LOCAL_SIZE + sizes.compressedSize > cdOffset) {
      throw bad(
        `declares ${sizes.compressedSize} bytes at ${sizes.localHeaderOffset}, past the entry area (${cdOffset} bytes)`,
      );
    }
    if (method === 0 && sizes.size !== sizes.compressedSize) {
      throw bad("stored entry has different compressed and plain sizes");
    }
    if (method === 8 && sizes.size > sizes.compressedSize * MAX_DEFLATE_RATIO + 64) {
      throw bad(
        `declares ${sizes.size} bytes from ${sizes.compressedSize} compressed: more than deflate can produce`,
      );
    }
    entries.set(name, { name, method, crc32: v.getUint32(p + 16, true), ...sizes });
    p = next;
  }
  return entries;
}

/** Replaces the 32-bit fields that are 0xFFFFFFFF with their ZIP64 extra-field values, in spec order. */
function readZip64Extra(
  file: RangeFile,
  extra: Uint8Array,
  sizes: { size: number; compressedSize: number; localHeaderOffset: number },
  name: string,
): void {
  const wanted = (["size", "compressedSize", "localHeaderOffset"] as const).filter(
    (k) => sizes[k] === 0xffffffff,
  );
  if (wanted.length === 0) return;
  const v = view(extra);
  for (let p = 0; p + 4 <= extra.length; ) {
    const id = v.getUint16(p, true);
    const len = v.getUint16(p + 2, true);
    if (p + 4 + len > extra.length) break;
    if (id === 0x0001) {
      if (len < wanted.length * 8) throw file.corrupt(`entry "${name}": ZIP64 extra field is too short`);
      wanted.forEach((k, i) => {
        const limit = k === "size" ? Number.MAX_SAFE_INTEGER : file.size;
        sizes[k] = u64(v, p + 4 + i * 8, file, `entry "${name}" ${k}`, limit);
      });
      return;
    }
    p += 4 + len;
  }
  throw file.corrupt(`entry "${name}": sizes need a ZIP64 extra field, which is missing`);
}
