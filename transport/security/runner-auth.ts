/**
 * Who may call a stage runner (ExecuteTask, Describe): only the coordinator. Two mechanisms, each
 * applied when configured:
 *
 * - mTLS (LAVIE_TLS_CLIENT_CA_FILE on the runner): the TLS handshake already refuses clients without
 *   a certificate from the CA; then the certificate's subject CN or one of its DNS names must be in
 *   LAVIE_RUNNER_ALLOWED_CLIENTS (default "lavie-coordinator"), else PERMISSION_DENIED.
 * - A shared token (LAVIE_RUNNER_TOKEN_FILE on the runners and the coordinator), for deployments
 *   without TLS: the coordinator sends "authorization: Bearer <token>"; missing or wrong ->
 *   UNAUTHENTICATED. The file holds one token per line (at least 16 characters each): the
 *   coordinator presents the first, runners accept any, so a token rotates without downtime
 *   (add the new one second, roll out, then make it first, then drop the old). Re-read on change.
 *
 * gRPC health and reflection stay open (Kubernetes probes).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type * as grpc from "@grpc/grpc-js";
import { LavieError } from "../../core/errors.ts";
import { bearerToken } from "./auth.ts";
import { certificateNames } from "./tls.ts";

export const DEFAULT_ALLOWED_CLIENTS: readonly string[] = ["lavie-coordinator"];

export interface RunnerCallPolicy {
  /** Allowed client certificate names (CN or DNS SAN); when set, calls need such a certificate. */
  allowedClients?: readonly string[];
  /** Accepted bearer tokens; when set, calls must present one. */
  tokens?: () => readonly string[];
}

/** Parses a token file: one token per line (blank lines ignored), each 16-4096 visible ASCII characters. */
export function parseRunnerTokens(content: Buffer, label: string): string[] {
  const tokens: string[] = [];
  const lines = content.toString("utf8").split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const t = lines[i]!.trim();
    if (t === "") continue;
    if (!/^[\x21-\x7e]{16,4096}$/.test(t)) {
      throw new Error(
        `${label} line ${i + 1}: a token must be 16-4096 visible ASCII characters without spaces`,
      );
    }
    tokens.push(t);
  }
  if (tokens.length === 0) throw new Error(`${label}: contains no token`);
  return tokens;
}

const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();

function tokenAccepted(presented: string, tokens: readonly string[]): boolean {
  const h = digest(presented);
  let ok = false;
  for (const t of tokens) if (timingSafeEqual(digest(t), h)) ok = true;
  return ok;
}

type Call = Pick<grpc.ServerUnaryCall<unknown, unknown>, "metadata" | "getAuthContext">;

/** Why a call to a runner is refused, or null when it may proceed. */
export function refuseRunnerCall(policy: RunnerCallPolicy, call: Call): LavieError | null {
  if (policy.allowedClients) {
    const names = certificateNames(call.getAuthContext()?.sslPeerCertificate);
    if (names.length === 0) {
      return new LavieError("unauthenticated", "runner calls need a client certificate (mTLS)");
    }
    if (!names.some((n) => policy.allowedClients!.includes(n))) {
      return new LavieError(
        "permission_denied",
        `client certificate "${names[0]}" may not call runners; allowed: ${policy.allowedClients.join(", ")}`,
      );
    }
  }
  if (policy.tokens) {
    let token: string | null;
    try {
      token = bearerToken(call.metadata);
    } catch (err) {
      return LavieError.from(err);
    }
    if (token === null) {
      return new LavieError(
        "unauthenticated",
        'runner calls need "authorization: Bearer <runner token>" metadata',
      );
    }
    if (!tokenAccepted(token, policy.tokens())) {
      return new LavieError("unauthenticated", "wrong runner token");
    }
  }
  return null;
}
