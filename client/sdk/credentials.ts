/**
 * How the SDK authenticates to a coordinator: a bearer credential (API key or JWT) sent as
 * "authorization: Bearer <credential>" on every call, and TLS / mTLS channel credentials.
 *
 *   new LavieClient("lavie.example.com:443", {
 *     apiKey: process.env.LAVIE_API_KEY,
 *     tls: { ca: readFileSync("ca.pem") }, // or true for the system's roots
 *   });
 */
import * as grpc from "@grpc/grpc-js";
import { LavieError } from "../../core/errors.ts";

export interface ClientTls {
  /** PEM CA bundle that issued the coordinator's certificate (default: the system's roots). */
  ca?: Buffer | string;
  /** PEM client certificate (chain) and private key, when the coordinator requires mTLS. */
  cert?: Buffer | string;
  key?: Buffer | string;
  /** Name the coordinator's certificate is checked against instead of the address's host. */
  serverName?: string;
}

export interface ClientCredentialOptions {
  /** Plain grpc-js channel credentials; overrides `tls`. */
  credentials?: grpc.ChannelCredentials;
  /** An API key issued for a tenant (sent as a bearer credential; never logged). */
  apiKey?: string;
  /** A JWT, or a function giving the current one (called for every call, so it may refresh). */
  token?: string | (() => string);
  /** TLS to the coordinator: true = the system's roots, or CA / client certificate / server name. */
  tls?: boolean | ClientTls;
  channelOptions?: grpc.ChannelOptions;
}

const CREDENTIAL = /^[\x21-\x7e]{1,8192}$/;

function checked(value: string, field: string): string {
  // The message never contains the value: it is a secret.
  if (!CREDENTIAL.test(value)) {
    throw new LavieError(
      "invalid_argument",
      `${field}: must be 1-8192 visible ASCII characters without spaces`,
      {
        field,
      },
    );
  }
  return value;
}

const buf = (v: Buffer | string | undefined) => (v === undefined ? null : Buffer.from(v));

/** Channel credentials, channel options and client interceptors for the options. */
export function connectionOf(opts: ClientCredentialOptions): {
  credentials: grpc.ChannelCredentials;
  options: grpc.ClientOptions;
} {
  if (opts.apiKey !== undefined && opts.token !== undefined) {
    throw new LavieError("invalid_argument", "apiKey, token: give one credential, not both", {
      field: "token",
    });
  }
  let bearer: (() => string) | null = null;
  if (opts.apiKey !== undefined) {
    const key = checked(opts.apiKey, "apiKey");
    bearer = () => key;
  } else if (typeof opts.token === "string") {
    const token = checked(opts.token, "token");
    bearer = () => token;
  } else if (typeof opts.token === "function") {
    const fn = opts.token;
    bearer = () => checked(fn(), "token");
  }
  const tls = opts.tls === true ? {} : opts.tls || null;
  if (tls && (tls.cert === undefined) !== (tls.key === undefined)) {
    throw new LavieError("invalid_argument", "tls: a client certificate needs its key and vice versa", {
      field: tls.cert === undefined ? "tls.cert" : "tls.key",
    });
  }
  const credentials =
    opts.credentials ??
    (tls
      ? grpc.credentials.createSsl(buf(tls.ca), buf(tls.key), buf(tls.cert))
      : grpc.credentials.createInsecure());
  const options: grpc.ClientOptions = { ...opts.channelOptions };
  if (tls?.serverName) {
    options["grpc.ssl_target_name_override"] = tls.serverName;
    options["grpc.default_authority"] = tls.serverName;
  }
  if (bearer) {
    const current = bearer;
    const interceptor: grpc.Interceptor = (callOptions, nextCall) =>
      new grpc.InterceptingCall(nextCall(callOptions), {
        start(metadata, listener, next) {
          try {
            metadata.set("authorization", `Bearer ${current()}`);
          } catch {
            // a token function that fails: the call goes without one and gets UNAUTHENTICATED
          }
          next(metadata, listener);
        },
      });
    options.interceptors = [...(options.interceptors ?? []), interceptor];
  }
  return { credentials, options };
}
