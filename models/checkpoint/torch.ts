/**
 * PyTorch checkpoints in the zip format torch.save has written since 1.6: `<prefix>/data.pkl` (the
 * object graph, read by the data-only unpickler), `<prefix>/data/<key>` (one entry per storage, raw
 * little-endian elements), `<prefix>/byteorder` and `<prefix>/version`. Tensors come back as lazy
 * TorchTensor records whose view (offset, shape, stride) has been checked against their storage.
 */
import { LavieError } from "../../core/errors.ts";
import {
  checkedNumel,
  contiguousStride,
  type Dtype,
  describe,
  ITEM_SIZE,
  readers,
  type TensorRecord,
} from "./dtypes.ts";
import { RangeFile } from "./file.ts";
import { StorageType, unpickle } from "./pickle.ts";
import { ZipArchive } from "./zip.ts";

/** One storage of the archive, as named by a persistent id. */
export class TorchStorage {
  constructor(
    readonly entry: string,
    readonly dtype: Dtype,
    readonly numel: number,
  ) {}
}

export class TorchTensor implements TensorRecord {
  readonly numel: number;
  readonly read: TensorRecord["read"];
  readonly readFloat32: TensorRecord["readFloat32"];
  readonly readBytes: TensorRecord["readBytes"];

  constructor(
    private readonly archive: ZipArchive,
    readonly storage: TorchStorage,
    readonly storageOffset: number,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
    readonly source: string,
    /** Elements of the storage the view spans, from storageOffset. */
    private readonly extent: number,
  ) {
    this.numel = shape.reduce((a, b) => a * b, 1);
    const r = readers(storage.dtype, () => this.gather());
    this.read = r.read;
    this.readFloat32 = r.readFloat32;
    this.readBytes = r.readBytes;
  }

  get dtype(): Dtype {
    return this.storage.dtype;
  }

  private async gather(): Promise<Uint8Array> {
    const size = ITEM_SIZE[this.dtype];
    if (this.numel === 0) return new Uint8Array(0);
    const src = await this.archive.readRange(
      this.storage.entry,
      this.storageOffset * size,
      this.extent * size,
    );
    if (isContiguous(this.shape, this.stride)) return src;
    const out = new Uint8Array(this.numel * size);
    const rank = this.shape.length;
    const index = new Array<number>(rank).fill(0);
    const last = rank - 1;
    const rowLen = this.shape[last]!;
    const rowStride = this.stride[last]! * size;
    for (let o = 0; o < out.length; o += rowLen * size) {
      let base = 0;
      for (let d = 0; d < last; d++) base += index[d]! * this.stride[d]!;
      base *= size;
      if (rowStride === size) out.set(src.subarray(base, base + rowLen * size), o);
      else {
        for (let i = 0; i < rowLen; i++)
          out.set(src.subarray(base + i * rowStride, base + i * rowStride + size), o + i * size);
      }
      for (let d = last - 1; d >= 0 && ++index[d]! === this.shape[d]!; d--) index[d] = 0;
    }
    return out;
  }
}

function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  const want = contiguousStride(shape);
  return shape.every((d, i) => d === 1 || stride[i] === want[i]);
}

/** Reads a torch.save zip checkpoint and returns its object graph, tensors as TorchTensor records. */
export async function readTorchCheckpoint(path: string): Promise<unknown> {
  const file = await RangeFile.open(path);
  await refuseLegacy(file);
  const archive = await ZipArchive.open(file);
  const pickles = [...archive.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pickles.length !== 1) {
    throw new LavieError(
      "failed_precondition",
      `${path}: not a PyTorch checkpoint: expected one "<name>/data.pkl" entry, found ${pickles.length}`,
      { field: path },
    );
  }
  const prefix = pickles[0]!.slice(0, -"data.pkl".length);
  const order = archive.entries.has(`${prefix}byteorder`)
    ? Buffer.from(await archive.read(`${prefix}byteorder`)).toString()
    : "little";
  if (order !== "little") {
    throw new LavieError(
      "failed_precondition",
      `${path}: byteorder "${order}" is not supported (only little-endian)`,
      { field: path },
    );
  }
  const storages = new Map<string, TorchStorage>();
  const bad = (what: string, message: string) => file.corrupt(`${what}: ${message}`);

  const persistentLoad = (pid: unknown): TorchStorage => {
    if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== "storage") {
      throw bad("persistent id", `expected ('storage', type, key, location, numel), got ${describe(pid)}`);
    }
    const [, type, key, , numel] = pid as unknown[];
    if (!(type instanceof StorageType)) {
      throw bad("persistent id", `storage type must be a torch storage class, got ${describe(type)}`);
    }
    if (typeof key !== "string" || !/^\w{1,64}$/.test(key)) {
      throw bad("persistent id", `invalid storage key ${describe(key)}`);
    }
    const entry = `${prefix}data/${key}`;
    const known = storages.get(key);
    if (known) {
      if (known.dtype !== type.dtype) {
        throw bad(entry, `storage is used as both ${known.dtype} and ${type.dtype}`);
      }
      return known;
    }
    const size = archive.entry(entry).size;
    if (
      typeof numel !== "number" ||
      !Number.isSafeInteger(numel) ||
      numel < 0 ||
      numel * ITEM_SIZE[type.dtype] > size
    ) {
      throw bad(
        entry,
        `storage of ${String(numel)} ${type.dtype} elements does not fit its ${size}-byte entry`,
      );
    }
    const storage = new TorchStorage(entry, type.dtype, numel);
    storages.set(key, storage);
    return storage;
  };

  const rebuildTensor = (storage: unknown, offset: unknown, size: unknown, stride: unknown): TorchTensor => {
    if (!(storage instanceof TorchStorage)) {
      throw bad("tensor", `storage must be a persistent storage, got ${describe(storage)}`);
    }
    const what = `tensor on ${storage.entry}`;
    const numel = checkedNumel(size, ITEM_SIZE[storage.dtype], file.size, `${path}: ${what}`);
    const shape = size as number[];
    if (
      !Array.isArray(stride) ||
      stride.length !== shape.length ||
      !stride.every((s) => Number.isSafeInteger(s) && s >= 0)
    ) {
      throw bad(what, `stride ${describe(stride)} must be ${shape.length} non-negative integers`);
    }
    if (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 0) {
      throw bad(what, `storage offset ${describe(offset)} must be a non-negative integer`);
    }
    const extent =
      numel === 0 ? 0 : 1 + shape.reduce((acc, d, i) => acc + (d - 1) * (stride[i] as number), 0);
    if (offset + extent > storage.numel) {
      throw bad(
        what,
        `shape [${shape}] with stride [${stride}] at offset ${offset} needs ${offset + extent} elements, but the storage holds ${storage.numel}`,
      );
    }
    return new TorchTensor(
      archive,
      storage,
      offset,
      [...shape],
      [...(stride as number[])],
      `${path}: ${storage.entry}`,
      extent,
    );
  };

  const pkl = await archive.read(pickles[0]!);
  return unpickle(pkl, `${path}: ${pickles[0]}`, { persistentLoad, rebuildTensor });
}

async function refuseLegacy(file: RangeFile): Promise<void> {
  const head = await file.read(0, Math.min(file.size, 512));
  if (head[0] === 0x50 && head[1] === 0x4b) return; // "PK": a zip archive
  const tar = Buffer.from(head.subarray(257, 262)).toString("latin1") === "ustar";
  const pickle = head[0] === 0x80 && head[1] !== undefined && head[1] >= 2 && head[1] <= 5;
  const what =
    tar || pickle ? "uses the legacy PyTorch serialization format" : "is not a PyTorch zip checkpoint";
  throw new LavieError(
    "failed_precondition",
    `${file.path}: ${what}${tar || pickle ? " (torch < 1.6, or _use_new_zipfile_serialization=False)" : ""}, which is not supported; ` +
      "re-save it with torch>=1.6: torch.save(torch.load(old_path), new_path)",
    { field: file.path },
  );
}
