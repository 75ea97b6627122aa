/**
 * Authentication and TLS for the gRPC APIs.
 *
 *   // coordinator main: API keys / JWT for the client API, TLS, how to reach runners
 *   const s = coordinatorSecurityFromEnv(process.env, log);
 *   await Coordinator.start({ ..., auth: s.auth, serverCredentials: s.serverCredentials, runnerTransport: s.runners });
 *
 *   // runner main: TLS / mTLS, who may call (only the coordinator), runner token
 *   const r = runnerSecurityFromEnv(process.env, log);
 *   new StageRunner({ ..., credentials: r.credentials, allowedClients: r.policy.allowedClients, tokens: r.policy.tokens });
 *
 * Files: api-keys.ts (key file format), jwt.ts (HS256/RS256/ES256), auth.ts (the Authenticator),
 * runner-auth.ts (runner callers), tls.ts (PEM credentials), watched-file.ts (re-read on change).
 */
export { type ApiKeyEntry, findApiKey, hashApiKey, parseApiKeys } from "./api-keys.ts";
export {
  type AuthOptions,
  authenticatorFromEnv,
  authOptionsFromEnv,
  bearerToken,
  CredentialAuthenticator,
} from "./auth.ts";
export {
  type CoordinatorSecurity,
  coordinatorSecurityFromEnv,
  type RunnerSecurity,
  runnerSecurityFromEnv,
} from "./env.ts";
export { type JwtKeys, type JwtPolicy, verifyJwt } from "./jwt.ts";
export { DEFAULT_ALLOWED_CLIENTS, type RunnerCallPolicy, refuseRunnerCall } from "./runner-auth.ts";
export { certificateNames, channelTls, type PemFile, pemFile, serverTls } from "./tls.ts";
export { WatchedFile } from "./watched-file.ts";
