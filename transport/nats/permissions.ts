/**
 * Per-role NATS permissions (pure): which subjects the coordinator and the stage runners may
 * publish and subscribe to, and nats-server `authorization { users = [...] }` blocks built from them.
 *
 *   const conf = authorizationBlock([
 *     { user: "lavie-coordinator", password: "...", role: "coordinator" },
 *     { user: "lavie-runner", password: "...", role: "runner" },
 *   ]);
 *
 * The lists are the JetStream API calls the nats.js clients make for this project's streams
 * (checked against a traced nats-server run: test/integration/nats-auth.test.ts runs a real job with
 * these permissions), scoped by stream name so that a permission on one stream never reaches another:
 *
 * - coordinator: the job records (KV `lavie-jobs`: read, write, list), the runner registry
 *   (KV `lavie-runners`: read and watch only), the tensors (object store `lavie-tensors`: read,
 *   write, delete objects - a delete purges the object's chunks). It may create these streams, never
 *   update or delete them, and never purge the KV streams.
 * - runner: its registry entry (KV `lavie-runners`: write only), the tensors (object store: read,
 *   write; purge, which nats.js uses to drop the chunks of an object it replaced when a retried task
 *   rewrites its output), the CFG exchange stream (`LAVIE_CFG`, subjects `lavie.cfg.>`). Nothing on
 *   `lavie-jobs`: it cannot read or write job records. It may create its streams, never update or
 *   delete any stream.
 * - admin: everything (operators: nats CLI, backups). Optional.
 *
 * Replies: each role subscribes only to its own inbox prefix (`_INBOX_<role>` by default; the
 * clients set it with LAVIE_NATS_INBOX_PREFIX), so a runner cannot read the replies the server sends
 * to the coordinator (e.g. job records). The Helm chart renders the same lists
 * (helm/lavie-serve/templates/_helpers.tpl, "lavie.natsPermissions"); test/helm/chart.test.ts checks
 * that they are equal.
 */
import { invalidArgument, LavieError } from "../../core/errors.ts";
import { CFG_STREAM, CFG_SUBJECT_PREFIX } from "./cfg-exchange.ts";
import { DEFAULT_JOBS_BUCKET } from "./kv.ts";
import { DEFAULT_RUNNERS_BUCKET } from "./registry.ts";
import { DEFAULT_TENSOR_BUCKET } from "./tensors.ts";

export const NATS_ROLES = ["coordinator", "runner", "admin"] as const;
export type NatsRole = (typeof NATS_ROLES)[number];

export interface NatsPermissionParams {
  /** KV bucket of job records (default lavie-jobs). */
  jobsBucket?: string;
  /** KV bucket of the runner registry (default lavie-runners; LAVIE_RUNNERS_BUCKET). */
  runnersBucket?: string;
  /** Object store bucket of the data plane (default lavie-tensors; LAVIE_TENSOR_BUCKET). */
  tensorBucket?: string;
  /** Stream of the CFG exchange (default LAVIE_CFG). */
  cfgStream?: string;
  /** Inbox prefix of the role's connections (default `_INBOX_<role>`; `_INBOX` for admin). */
  inboxPrefix?: string;
}

export interface NatsPermissions {
  publish: { allow: string[] };
  subscribe: { allow: string[] };
}

/** The inbox prefix a role's clients use by default with the generated permissions. */
export function defaultInboxPrefix(role: NatsRole): string {
  return role === "admin" ? "_INBOX" : `_INBOX_${role}`;
}

const NAME = /^[A-Za-z0-9_-]{1,64}$/;
const INBOX = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

function checkName(field: string, v: string): string {
  if (!NAME.test(v)) throw invalidArgument(field, `"${v}" must be 1-64 characters of [A-Za-z0-9_-]`);
  return v;
}

/** Read access to a stream: info, message get (plain and direct), ordered consumers and their flow control. */
function readStream(stream: string): string[] {
  return [
    `$JS.API.STREAM.INFO.${stream}`,
    `$JS.API.STREAM.MSG.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}.>`,
    `$JS.API.CONSUMER.CREATE.${stream}`,
    `$JS.API.CONSUMER.CREATE.${stream}.>`,
    `$JS.API.CONSUMER.INFO.${stream}.>`,
    `$JS.API.CONSUMER.DELETE.${stream}.>`,
    `$JS.FC.${stream}.>`,
  ];
}

/** Publish/subscribe allow lists of a role. */
export function rolePermissions(role: NatsRole, params: NatsPermissionParams = {}): NatsPermissions {
  const jobs = checkName("jobsBucket", params.jobsBucket ?? DEFAULT_JOBS_BUCKET);
  const runners = checkName("runnersBucket", params.runnersBucket ?? DEFAULT_RUNNERS_BUCKET);
  const tensors = checkName("tensorBucket", params.tensorBucket ?? DEFAULT_TENSOR_BUCKET);
  const cfg = checkName("cfgStream", params.cfgStream ?? CFG_STREAM);
  const inbox = params.inboxPrefix ?? defaultInboxPrefix(role);
  if (!INBOX.test(inbox)) {
    throw invalidArgument(
      "inboxPrefix",
      `"${inbox}" must be dot-separated tokens of [A-Za-z0-9_-] (no wildcards)`,
    );
  }
  const kvJobs = `KV_${jobs}`;
  const kvRunners = `KV_${runners}`;
  const objTensors = `OBJ_${tensors}`;
  switch (role) {
    case "admin":
      return { publish: { allow: [">"] }, subscribe: { allow: [">"] } };
    case "coordinator":
      return {
        publish: {
          allow: [
            "$JS.API.INFO",
            `$JS.API.STREAM.CREATE.${kvJobs}`,
            ...readStream(kvJobs),
            `$KV.${jobs}.>`,
            `$JS.API.STREAM.CREATE.${kvRunners}`,
            ...readStream(kvRunners),
            `$JS.API.STREAM.CREATE.${objTensors}`,
            `$JS.API.STREAM.PURGE.${objTensors}`,
            ...readStream(objTensors),
            `$O.${tensors}.>`,
          ],
        },
        subscribe: { allow: [`${inbox}.>`] },
      };
    case "runner":
      return {
        publish: {
          allow: [
            "$JS.API.INFO",
            `$JS.API.STREAM.CREATE.${kvRunners}`,
            `$JS.API.STREAM.INFO.${kvRunners}`,
            `$KV.${runners}.>`,
            `$JS.API.STREAM.CREATE.${objTensors}`,
            `$JS.API.STREAM.PURGE.${objTensors}`,
            ...readStream(objTensors),
            `$O.${tensors}.>`,
            `$JS.API.STREAM.CREATE.${cfg}`,
            `$JS.API.STREAM.PURGE.${cfg}`,
            ...readStream(cfg),
            `$JS.API.CONSUMER.MSG.NEXT.${cfg}.>`,
            `${CFG_SUBJECT_PREFIX}.>`,
          ],
        },
        subscribe: { allow: [`${inbox}.>`] },
      };
    default:
      throw invalidArgument("role", `"${String(role)}" is not one of ${NATS_ROLES.join(", ")}`);
  }
}

export interface NatsUser {
  user: string;
  /** Plain text, a bcrypt hash ("$2a$..."), or a nats-server variable reference such as "$PASSWORD". */
  password: string;
  role: NatsRole;
  /** Overrides the role's inbox prefix. */
  inboxPrefix?: string;
}

/** A string in nats-server configuration syntax (double-quoted, escaped). */
function q(s: string): string {
  return JSON.stringify(s);
}

function list(items: string[]): string {
  return `[${items.map(q).join(", ")}]`;
}

/**
 * A nats-server `authorization { users = [...] }` block. A password that starts with "$" and is a
 * plain variable name (e.g. "$LAVIE_NATS_PASSWORD_RUNNER") is written unquoted, so nats-server reads
 * it from its environment; bcrypt hashes ("$2a$...") and other passwords are quoted.
 */
export function authorizationBlock(users: NatsUser[], params: NatsPermissionParams = {}): string {
  const seen = new Set<string>();
  const lines = ["authorization {", "  users = ["];
  for (const u of users) {
    if (!/^[A-Za-z0-9_.@-]{1,128}$/.test(u.user)) {
      throw invalidArgument("user", `"${u.user}" must be 1-128 characters of [A-Za-z0-9_.@-]`);
    }
    if (seen.has(u.user)) throw invalidArgument("user", `"${u.user}" is listed twice`);
    seen.add(u.user);
    if (u.password.length === 0)
      throw new LavieError("invalid_argument", `password of user "${u.user}": must not be empty`, {
        field: "password",
      });
    const p = rolePermissions(u.role, { ...params, ...(u.inboxPrefix && { inboxPrefix: u.inboxPrefix }) });
    const password = /^\$[A-Za-z_][A-Za-z0-9_]*$/.test(u.password) ? u.password : q(u.password);
    lines.push(
      `    { user: ${q(u.user)}, password: ${password}, permissions: {`,
      `        publish: { allow: ${list(p.publish.allow)} }`,
      `        subscribe: { allow: ${list(p.subscribe.allow)} }`,
      "    } }",
    );
  }
  lines.push("  ]", "}");
  return `${lines.join("\n")}\n`;
}
