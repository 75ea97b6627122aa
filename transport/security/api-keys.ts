/**
 * The API key file (LAVIE_API_KEYS_FILE): which tenant each key belongs to. It stores SHA-256
 * hashes of the keys, never the keys. One key per line, fields separated by spaces:
 *
 *   # tenant   name (for logs)  sha256 of the key                                                         flags
 *   acme       ci-pipeline      sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
 *   ops        oncall           sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752  admin
 *
 * Blank lines and lines starting with "#" are ignored. tenant: 1-63 of [a-z0-9._-] (starting and
 * ending with a letter or digit); name: 1-64 of [A-Za-z0-9._@-]; the hash is of the key's UTF-8
 * bytes (`printf %s "$KEY" | sha256sum`); the optional flag "admin" lets the key list and act on
 * every tenant's jobs. Errors name the line and field, never a field's value (a key pasted into the
 * wrong place must not reach the logs). A key presented as "authorization: Bearer <key>" is hashed and compared with
 * every entry in constant time.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { TENANT_PATTERN } from "../../core/tenancy.ts";

export interface ApiKeyEntry {
  readonly tenant: string;
  readonly name: string;
  /** SHA-256 of the key (32 bytes). */
  readonly hash: Buffer;
  readonly admin: boolean;
}

const NAME = /^[A-Za-z0-9._@-]{1,64}$/;
const HASH = /^sha256:([0-9a-f]{64})$/;

/** "sha256:<hex>" of a key, the form the key file stores. */
export function hashApiKey(key: string): string {
  return `sha256:${createHash("sha256").update(key, "utf8").digest("hex")}`;
}

/** Parses a key file; throws naming `label` (the variable and file) and the line. */
export function parseApiKeys(content: Buffer, label: string): ApiKeyEntry[] {
  const out: ApiKeyEntry[] = [];
  const seen = new Map<string, number>();
  const lines = content.toString("utf8").split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "" || line.startsWith("#")) continue;
    const at = `${label} line ${i + 1}`;
    const fields = line.split(/\s+/);
    if (fields.length < 3 || fields.length > 4) {
      throw new Error(
        `${at}: expected "<tenant> <name> sha256:<64 hex digits> [admin]", got ${fields.length} fields`,
      );
    }
    const [tenant, name, hash, flag] = fields as [string, string, string, string | undefined];
    if (!TENANT_PATTERN.test(tenant)) {
      throw new Error(
        `${at}: the tenant (field 1) must be 1-63 characters of [a-z0-9._-], starting and ending with a letter or digit`,
      );
    }
    if (!NAME.test(name))
      throw new Error(`${at}: the name (field 2) must be 1-64 characters of [A-Za-z0-9._@-]`);
    const m = HASH.exec(hash);
    if (!m) {
      throw new Error(
        `${at}: field 3 must be "sha256:" and 64 lowercase hex digits (the key's hash, not the key)`,
      );
    }
    if (flag !== undefined && flag !== "admin") {
      throw new Error(`${at}: unknown flag (field 4); allowed: admin`);
    }
    const first = seen.get(m[1]!);
    if (first !== undefined) throw new Error(`${at}: the same key hash as line ${first}`);
    seen.set(m[1]!, i + 1);
    out.push({ tenant, name, hash: Buffer.from(m[1]!, "hex"), admin: flag === "admin" });
  }
  if (out.length === 0) throw new Error(`${label}: contains no keys`);
  return out;
}

/** The entry of a presented key, or null; looks at every entry whatever matches (constant time). */
export function findApiKey(entries: readonly ApiKeyEntry[], presented: string): ApiKeyEntry | null {
  const h = createHash("sha256").update(presented, "utf8").digest();
  let found: ApiKeyEntry | null = null;
  for (const e of entries) {
    if (timingSafeEqual(e.hash, h) && found === null) found = e;
  }
  return found;
}
